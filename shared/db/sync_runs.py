"""The sync-run row every requester writes before it publishes, so that the outcome has a home."""

from __future__ import annotations

from shared.db.tables import SyncRun
from shared.events import SyncRequested


def requested_run(request: SyncRequested) -> SyncRun:
    return SyncRun(
        id=request.event_id,
        account_id=request.account_id,
        trigger=request.trigger.value,
        status="requested",
        requested_at=request.occurred_at,
        requested_by=request.requested_by,
        scheduled_for=request.scheduled_for,
    )
