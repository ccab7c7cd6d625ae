"""Turn sync requests into snapshots, retries or failures; knows nothing of Kafka, it gets a bus.

Each answer a broker gives is handed to the raw archive (redacted: see `archive`) before the
batch's outcomes are published, so `portfolio-sync replay` finds every snapshot's answer.

A failure that trying again can cure (rate limited, transient) goes back on the broker's retry topic
with a `not_before`, so the account waits there instead of holding up the others; every attempt
is announced as a SyncFailed (final or not), so each retry shows in the account's sync runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError

from services.fetcher.adapter import AccountContext, BrokerAdapter, BrokerAnswer, BrokerError, RateLimited
from services.fetcher.archive import AnswerArchive, ArchivedAnswer
from services.fetcher.limits import counting_for
from services.fetcher.metrics import FetcherMetrics, process_metrics
from services.fetcher.retry import RetryPolicy
from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.credentials import CredentialCipher, CredentialsUnreadable
from shared.events import Event, FailureKind, HoldingSnapshot, SyncFailed, SyncRequested, utc_now
from shared.log_context import bound_run

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({FailureKind.TRANSIENT, FailureKind.RATE_LIMITED})
_ATTEMPT_NAMESPACE = uuid.UUID("af64e725-714e-4d2a-a06d-aa7bc70a6fd7")


def attempt_event_id(run_id: uuid.UUID, attempt: int, outcome: str) -> uuid.UUID:
    """The id of what attempt `attempt` of run `run_id` published as `outcome` (snapshot, failure,
    retry request). Derived, not random: a request delivered again (the fetcher died after publishing,
    before committing) publishes the same ids, and the ledger stores each once."""
    return uuid.uuid5(_ATTEMPT_NAMESPACE, f"{run_id}/{attempt}/{outcome}")


class Fetcher:
    def __init__(
        self,
        *,
        adapter: BrokerAdapter,
        bus: MessageBus,
        cipher: CredentialCipher,
        slots: asyncio.Semaphore,
        retry: RetryPolicy,
        metrics: FetcherMetrics | None = None,
        archive: AnswerArchive | None = None,
        secret_fields: Iterable[str] = (),
    ) -> None:
        self._adapter = adapter
        self._archive = archive
        # Credential fields whose values are blanked out of archived answers, beyond those the
        # adapter names itself (`BrokerAnswer.secrets`): the broker type's required fields.
        self._secret_fields = tuple(secret_fields)
        self._metrics = metrics or process_metrics()
        self._bus = bus
        self._cipher = cipher
        self._slots = slots  # the broker's concurrency cap, shared by every batch of this process
        self._retry = retry
        self.fetcher_id = f"{socket.gethostname()}:{os.getpid()}"
        self.in_flight = 0  # accounts at the broker right now, for the heartbeat

    async def handle_requests(self, requests: Sequence[Event]) -> Counter[str]:
        """Sync every request of the batch concurrently; publish all outcomes before returning; return
        how many ended how (`snapshot`, `retrying`, `failed`, `waiting`), for the batch log line."""
        answers: list[ArchivedAnswer] = []
        outcomes = await asyncio.gather(
            *(self._handle(r, answers) for r in requests if isinstance(r, SyncRequested))
        )
        await self._keep(answers)
        await self._bus.publish([message for messages in outcomes for message in messages])
        return Counter(_outcome(messages) for messages in outcomes)

    async def _handle(self, request: SyncRequested, answers: list[ArchivedAnswer]) -> list[OutgoingMessage]:
        # Each request is a task of its own (gather), so the bound run is this request's alone.
        with bound_run(request.sync_run_id, account_id=request.account_id, broker=request.broker):
            return await self._attempt(request, answers)

    async def _attempt(self, request: SyncRequested, answers: list[ArchivedAnswer]) -> list[OutgoingMessage]:
        if request.not_before is not None and not await self._wait_until(request.not_before):
            # Due later than the batch may wait: back on the retry topic, unchanged, to be looked at
            # again. Holding the batch instead would outlive Kafka's max poll interval: the fetcher
            # would leave its group and the batch would be delivered again.
            return [OutgoingMessage.of(topics.sync_request_retries(request.broker), request)]
        started_at, clock = utc_now(), time.perf_counter()
        outcome = await self.sync_account(request, answers)
        duration_ms = round((time.perf_counter() - clock) * 1000)
        if isinstance(outcome, HoldingSnapshot):
            self._metrics.syncs.labels(broker=request.broker, outcome="succeeded").inc()
            snapshot = outcome.model_copy(update={"started_at": started_at, "duration_ms": duration_ms})
            return [OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, snapshot)]
        kind, reason, retry_after_s = outcome
        self._metrics.syncs.labels(broker=request.broker, outcome=kind.value).inc()
        delay_s = (
            self._retry.delay_s(request.attempt, retry_after_s=retry_after_s) if kind in _RETRYABLE else None
        )
        retry_at = None if delay_s is None else utc_now() + timedelta(seconds=delay_s)
        if retry_at is not None:
            self._metrics.retries.labels(broker=request.broker, kind=kind.value).inc()
        failure = SyncFailed(
            event_id=attempt_event_id(request.sync_run_id, request.attempt, "failure"),
            account_id=request.account_id,
            request_id=request.sync_run_id,
            broker=request.broker,
            kind=kind,
            reason=reason,
            attempt=request.attempt,
            final=retry_at is None,
            retry_at=retry_at,
            fetcher_id=self.fetcher_id,
            started_at=started_at,
            duration_ms=duration_ms,
        )
        log.info(
            "sync failed",
            extra={
                "kind": kind.value,
                "attempt": request.attempt,
                "retry_at": retry_at.isoformat() if retry_at else None,
                "reason": reason,
            },
        )
        messages = [OutgoingMessage.of(topics.SYNC_FAILURES, failure)]
        if retry_at is not None:
            retry = request.model_copy(
                update={
                    "event_id": attempt_event_id(request.sync_run_id, request.attempt + 1, "request"),
                    "occurred_at": utc_now(),
                    "attempt": request.attempt + 1,
                    "run_id": request.sync_run_id,
                    "not_before": retry_at,
                }
            )
            messages.append(OutgoingMessage.of(topics.sync_request_retries(request.broker), retry))
        return messages

    async def _wait_until(self, not_before: datetime) -> bool:
        """Sleep until `not_before` if it is at most the inline bound away; False when it is farther
        (after sleeping the bound, so that a parked retry comes round at most once per bound)."""
        # Outside the concurrency slots: a waiting retry holds no broker capacity.
        wait_s = (not_before - utc_now()).total_seconds()
        await asyncio.sleep(max(0.0, min(wait_s, self._retry.max_inline_wait_s)))
        return wait_s <= self._retry.max_inline_wait_s

    async def sync_account(
        self, request: SyncRequested, answers: list[ArchivedAnswer]
    ) -> HoldingSnapshot | tuple[FailureKind, str, float | None]:
        """Fetch once: the snapshot, or why not (kind, reason, seconds the broker asked to wait).
        The broker's answer, if it gave one, is added to `answers`, for the archive."""
        try:
            account = AccountContext(request.account_id, self._credentials(request))
        except CredentialsUnreadable as exc:
            # The user's credentials may be fine: it is this fetcher's keys (CREDENTIALS_KEYS) that
            # cannot open them. An operator must act, so: its own kind, an ERROR, a counter.
            log.error(
                "no configured key opens the account's credentials: check CREDENTIALS_KEYS",
                extra={"account_id": str(request.account_id), "broker": request.broker},
            )
            self._metrics.unreadable_credentials.labels(broker=request.broker).inc()
            return FailureKind.UNREADABLE_CREDENTIALS, str(exc), None
        async with self._slots:
            in_flight = self._metrics.in_flight.labels(broker=request.broker)
            in_flight.inc()
            started = time.perf_counter()
            self.in_flight += 1
            try:
                with counting_for(account.credentials):  # the bucket of the account's key
                    answer = await self._adapter.fetch_answer(account)
                snapshot_id = attempt_event_id(request.sync_run_id, request.attempt, "snapshot")
                try:
                    holdings = self._adapter.parse_holdings(answer)
                except (BrokerError, ValidationError):
                    self._archived(answers, request, account, answer, snapshot_id=None)
                    raise
                self._archived(answers, request, account, answer, snapshot_id=snapshot_id)
            except RateLimited as exc:
                return exc.kind, str(exc), exc.retry_after_s
            except BrokerError as exc:
                return exc.kind, str(exc) or type(exc).__name__, None
            except ValidationError as exc:
                return FailureKind.INVALID_RESPONSE, f"broker response does not fit a holding: {exc}", None
            finally:
                in_flight.dec()
                self._metrics.sync_duration.labels(broker=request.broker).observe(
                    time.perf_counter() - started
                )
                self.in_flight -= 1
        return HoldingSnapshot(
            event_id=snapshot_id,
            account_id=request.account_id,
            request_id=request.sync_run_id,
            broker=request.broker,
            taken_at=utc_now(),
            holdings=tuple(holdings),
            attempt=request.attempt,
            fetcher_id=self.fetcher_id,
        )

    def _archived(
        self,
        answers: list[ArchivedAnswer],
        request: SyncRequested,
        account: AccountContext,
        answer: BrokerAnswer,
        *,
        snapshot_id: uuid.UUID | None,
    ) -> None:
        if self._archive is None:
            return
        secrets = (account.credentials.get(name, "") for name in self._secret_fields)
        answers.append(
            ArchivedAnswer.of(
                answer,
                run_id=request.sync_run_id,
                attempt=request.attempt,
                account_id=request.account_id,
                broker=request.broker,
                secrets=secrets,
                snapshot_id=snapshot_id,
            )
        )

    async def _keep(self, answers: list[ArchivedAnswer]) -> None:
        """Hand the batch's answers to the archive. An archive that fails them is logged and counted,
        and the syncs go on: losing their replay is better than stopping every account's syncs."""
        if self._archive is None or not answers:
            return
        brokers = Counter(a.broker for a in answers)
        try:
            await self._archive.keep(answers)
        except Exception:
            log.exception("raw answers not archived", extra={"answers": len(answers)})
            outcome = "failed"
        else:
            outcome = "kept"
        for broker, count in brokers.items():
            self._metrics.raw_answers.labels(broker=broker, outcome=outcome).inc(count)

    def _credentials(self, request: SyncRequested) -> dict[str, str]:
        if request.credentials_ciphertext is None:
            return {}
        return self._cipher.decrypt(request.credentials_ciphertext)


def _outcome(messages: list[OutgoingMessage]) -> str:
    """How a request ended, from what it produced: a snapshot, or a failure with or without a retry."""
    if messages[0].topic == topics.HOLDINGS_SNAPSHOTS:
        return "snapshot"
    if messages[0].topic != topics.SYNC_FAILURES:
        return "waiting"  # not due yet: back on the retry topic
    return "retrying" if len(messages) > 1 else "failed"
