"""Turn sync requests into snapshots or failures. Knows nothing of Kafka: it gets a bus and an adapter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pydantic import ValidationError

from services.fetcher.adapter import AccountContext, BrokerAdapter, BrokerError
from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.credentials import CredentialCipher, CredentialsUnreadable
from shared.events import Event, FailureKind, HoldingSnapshot, SyncFailed, SyncRequested, utc_now

log = logging.getLogger(__name__)


class Fetcher:
    def __init__(
        self, *, adapter: BrokerAdapter, bus: MessageBus, cipher: CredentialCipher, slots: asyncio.Semaphore
    ) -> None:
        self._adapter = adapter
        self._bus = bus
        self._cipher = cipher
        self._slots = slots  # the broker's concurrency cap, shared by every batch of this process

    async def handle_requests(self, requests: Sequence[Event]) -> None:
        """Fetch every request of the batch concurrently; publish all outcomes before returning."""
        outcomes = await asyncio.gather(
            *(self.sync_account(r) for r in requests if isinstance(r, SyncRequested))
        )
        await self._bus.publish([_outgoing(outcome) for outcome in outcomes])

    async def sync_account(self, request: SyncRequested) -> HoldingSnapshot | SyncFailed:
        def failed(kind: FailureKind, reason: str) -> SyncFailed:
            log.info(
                "sync failed",
                extra={"account_id": str(request.account_id), "kind": kind.value, "reason": reason},
            )
            return SyncFailed(
                account_id=request.account_id,
                request_id=request.event_id,
                broker=request.broker,
                kind=kind,
                reason=reason,
                attempt=request.attempt,
            )

        try:
            account = AccountContext(request.account_id, self._credentials(request))
        except CredentialsUnreadable as exc:
            return failed(FailureKind.AUTH, str(exc))
        async with self._slots:
            try:
                holdings = await self._adapter.fetch_holdings(account)
            except BrokerError as exc:
                return failed(exc.kind, str(exc) or type(exc).__name__)
            except ValidationError as exc:
                return failed(FailureKind.INVALID_RESPONSE, f"broker response does not fit a holding: {exc}")
        return HoldingSnapshot(
            account_id=request.account_id,
            request_id=request.event_id,
            broker=request.broker,
            taken_at=utc_now(),
            holdings=tuple(holdings),
        )

    def _credentials(self, request: SyncRequested) -> dict[str, str]:
        if request.credentials_ciphertext is None:
            return {}
        return self._cipher.decrypt(request.credentials_ciphertext)


def _outgoing(event: HoldingSnapshot | SyncFailed) -> OutgoingMessage:
    topic = topics.HOLDINGS_SNAPSHOTS if isinstance(event, HoldingSnapshot) else topics.SYNC_FAILURES
    return OutgoingMessage.of(topic, event)
