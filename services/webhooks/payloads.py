"""What a receiver gets: the body of each webhook an event makes (Standard Webhooks' suggested shape,
`{"type", "timestamp", "data"}`), and its webhook-id, derived from the event's id so that a
redelivered event, or a replay, carries the same one."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from shared.events import Event, FailureKind, HoldingsChanged, SyncFailed
from shared.webhooks import WebhookEventType


@dataclass(frozen=True)
class Webhook:
    event_type: WebhookEventType
    message_id: str
    account_id: uuid.UUID
    portfolio_id: uuid.UUID | None  # None: the account's, looked up when the delivery is recorded
    event: Event

    def body(self, portfolio_id: uuid.UUID) -> str:
        data: dict[str, Any] = {"portfolio_id": str(portfolio_id)}
        if isinstance(self.event, HoldingsChanged):
            data |= self.event.model_dump(mode="json", exclude={"schema_version"})
        elif isinstance(self.event, SyncFailed):
            data |= self.event.model_dump(
                mode="json",
                include={"event_id", "occurred_at", "account_id", "request_id", "broker", "kind", "reason"},
            )
        envelope = {"type": self.event_type, "timestamp": self.event.occurred_at.isoformat(), "data": data}
        return json.dumps(envelope, separators=(",", ":"), sort_keys=True)


def webhook_of(event: Event) -> Webhook | None:
    """The webhook an event makes, if any: a committed change of positions; a sync refused for the
    credentials (the ledger's rule for `needs_reauth`: any failure of kind `auth`); a sync failed for
    good otherwise. A failure to be retried, and an account's removal, make none."""
    kind: WebhookEventType
    portfolio_id = None
    if isinstance(event, HoldingsChanged):
        kind, portfolio_id = "holdings.changed", event.portfolio_id
    elif isinstance(event, SyncFailed) and event.kind is FailureKind.AUTH:
        kind = "account.needs_reauth"
    elif isinstance(event, SyncFailed) and event.final:
        kind = "sync.failed"
    else:
        return None
    return Webhook(kind, f"msg_{event.event_id.hex}", event.account_id, portfolio_id, event)
