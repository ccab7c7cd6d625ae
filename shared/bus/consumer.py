"""The one consume loop every service runs: fetch, decode, handle, then commit.

Offsets are committed only after the handler's effect is durable, so a crash redelivers at worst
work already done. A record that does not decode, or that a handler rejects on its own, goes to the
topic's dead-letter topic with the reason; the loop carries on. An infrastructure error is retried
with backoff and never dead-lettered: waiting loses nothing. What counts as one is decided by
`is_transient` (by default `shared.db.errors.is_transient_db_error`: by SQLSTATE, whatever class
SQLAlchemy wrapped it in, plus connection-level errors and `BusUnavailable`). A commit that races a
rebalance (`PartitionsRevoked`) ends nothing either: the partitions' new owner gets the records
again, and what was prepared on top of them is dropped.

The loop is a two-stage pipeline. A handler works in two steps: `prepare` (decide the batch's
effect: reads, planning) and the `Write` it returns (make that effect durable). While batch N is
being written, batch N+1 is fetched, decoded and prepared, as if N had already taken effect. Writes
run one at a time and in order; N's offsets are committed when N's write returns. When a write
fails, whatever was prepared on top of it is void: the handler is told to `forget` it, and both
batches are handled again one at a time (prepare, then write), with the retries and dead-lettering
above. With `decode_ahead`, batch N+2 is fetched, and its first records decoded, while N+1 is
prepared: that fills the time preparing spends waiting on its reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from shared.bus.dead_letters import dead_letter_for
from shared.bus.port import (
    AssignmentListener,
    BusUnavailable,
    MessageBus,
    PartitionsRevoked,
    Record,
    Subscription,
)
from shared.db.errors import is_transient_db_error
from shared.events import Event, EventDecodeError, EventDecoder, decode_on_topic
from shared.metrics import CONSUMED_RECORDS, CONSUMER_LAG, DEAD_LETTERS

log = logging.getLogger(__name__)
T = TypeVar("T")

Outcomes = Mapping[str, int]
"""How many of a batch's events ended how (say `{"snapshot": 3, "retrying": 1}`), for its log line."""
Write = Callable[[], Coroutine[Any, Any, Outcomes | None]]


class BatchHandler(Protocol):
    async def prepare(self, events: Sequence[Event]) -> Write:
        """Work out what `events` do, assuming every batch prepared before them is written; return
        the step that writes it."""

    def forget(self) -> None:
        """A write failed: drop whatever was worked out on the assumption that it would succeed."""


@dataclass(frozen=True)
class OneStep:
    """A handler that simply handles a batch (`await handle(events)`): nothing to prepare ahead,
    so only fetching and decoding overlap the previous batch."""

    handle: Callable[[Sequence[Event]], Coroutine[Any, Any, Outcomes | None]]

    async def prepare(self, events: Sequence[Event]) -> Write:
        return functools.partial(self.handle, events)

    def forget(self) -> None:
        pass


@dataclass
class _Batch:
    records: list[Record]  # everything fetched, dead-lettered ones included: all are committed
    decoded: list[tuple[Record, Event]]  # the records that decoded (let go of once prepared)
    undecoded: list[Record]  # the records not decoded yet (fetched ahead: see `decode_ahead`)
    outcomes: Counter[str]  # what its handling came to, for its log line
    started: float  # when it was fetched (perf_counter)


@dataclass
class _Writing:
    """The batch being written: its records only (its events are decoded again should it fail)."""

    records: list[Record]
    task: asyncio.Task[Outcomes | None]
    outcomes: Counter[str]
    started: float


class _Stopped(Exception):
    """Stopped before a batch's effect was durable: commit nothing more."""


@dataclass
class EventConsumer:
    bus: MessageBus
    group: str
    event_types: Mapping[str, type[Event] | EventDecoder]  # what each topic carries, how decoded
    handler: BatchHandler
    is_transient: Callable[[BaseException], bool] = is_transient_db_error
    max_records: int = 500
    poll_timeout_s: float = 0.5
    max_backoff_s: float = 30.0
    listener: AssignmentListener | None = None  # told of every rebalance of `group`
    decode_ahead: int = 0
    """How many records of the next batch to decode while this one is prepared (the next batch is
    then fetched meanwhile too; 0: fetched once this one is prepared). Preparing waits on reads, and
    decoding fills those waits; beside planning it gains nothing (both hold the GIL), and what is
    decoded ahead is held while this batch is planned: so only a part, about what the waits take."""
    handled: int = field(default=0, init=False)
    _lag_reported: set[tuple[str, int]] = field(default_factory=set, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        subscription = await self.bus.subscribe(
            list(self.event_types), group=self.group, listener=self.listener
        )
        log.info("consuming", extra={"group": self.group, "topics": list(self.event_types)})
        writing: _Writing | None = None
        upcoming: asyncio.Task[_Batch] | None = None
        try:
            while not stop.is_set():
                if upcoming is None:
                    batch = await self._next(subscription)
                else:
                    batch = await self._decode_rest(await upcoming)
                if self.decode_ahead:
                    upcoming = asyncio.create_task(self._next(subscription, decode=self.decode_ahead))
                write = await self._prepare(batch) if batch.decoded else None
                if write is not None:
                    # The write holds what it needs of them: they are not kept while the previous
                    # batch is written, which is when a service that prepares ahead holds the most.
                    batch.decoded = []
                if writing is not None:
                    if not await self._finish(writing, subscription, stop):
                        if write is not None:  # the malformed ones were dead-lettered already
                            batch.decoded, _ = self._decode(batch.records)
                        write = None  # prepared on top of a write that failed
                    writing = None
                if write is not None:
                    task = asyncio.create_task(write())
                    writing = _Writing(batch.records, task, batch.outcomes, batch.started)
                elif batch.records:
                    if not await self._handle(batch.decoded, stop, batch.outcomes):
                        raise _Stopped
                    await self._commit(subscription, batch.records, batch.outcomes, batch.started)
                del batch  # its decoded events, so that they are not kept while the next is decoded
            if writing is not None:
                await self._finish(writing, subscription, stop)
        except _Stopped:
            log.info("stopped with a batch not yet durable; it will be delivered again")
        finally:
            if upcoming is not None and not upcoming.done():
                upcoming.cancel()  # fetched, never committed: delivered again
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upcoming
            if writing is not None and not writing.task.done():
                writing.task.cancel()  # cancelled (not stopped): its transaction rolls back
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writing.task
            self._report_lag({})  # another member reports these partitions now
            await subscription.close()

    async def _next(self, subscription: Subscription, *, decode: int | None = None) -> _Batch:
        """The next batch, its first `decode` records decoded (all of them by default)."""
        records = await self._retrying(
            "fetch", lambda: subscription.fetch(max_records=self.max_records, timeout_s=self.poll_timeout_s)
        )
        self._report_lag(await self._retrying("lag", subscription.lag))
        batch = _Batch(
            records, [], records[decode:] if decode is not None else [], Counter(), time.perf_counter()
        )
        return await self._decode_part(batch, records[:decode])

    async def _decode_rest(self, batch: _Batch) -> _Batch:
        undecoded, batch.undecoded = batch.undecoded, []
        return await self._decode_part(batch, undecoded)

    async def _decode_part(self, batch: _Batch, records: list[Record]) -> _Batch:
        """Decode `records` of `batch` into it; dead-letter those that do not decode."""
        if not records:
            return batch
        # In a worker thread: decoding a batch takes tens of milliseconds of CPU, and meanwhile the
        # event loop keeps the previous batch's write going (the GIL changes hands every millisecond:
        # see shared.runtime).
        decoded, malformed = await asyncio.to_thread(self._decode, records)
        batch.decoded += decoded
        for record, reason in malformed:
            await self._dead_letter(record, reason)
            batch.outcomes["dead_lettered"] += 1
        return batch

    def _report_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Set the lag gauge of every partition held; drop those of partitions no longer held."""
        for topic, partition in self._lag_reported - lags.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group, topic, str(partition))
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(group=self.group, topic=topic, partition=str(partition)).set(lag)
        self._lag_reported = set(lags)

    def _decode(self, records: list[Record]) -> tuple[list[tuple[Record, Event]], list[tuple[Record, str]]]:
        decoded: list[tuple[Record, Event]] = []
        malformed: list[tuple[Record, str]] = []
        for record in records:
            try:
                decoded.append((record, decode_on_topic(self.event_types[record.topic], record.value)))
            except EventDecodeError as exc:
                malformed.append((record, str(exc)))
        return decoded, malformed

    async def _prepare(self, batch: _Batch) -> Write | None:
        """The batch's write, or None when preparing failed (it is then handled on its own)."""
        try:
            return await self.handler.prepare([event for _, event in batch.decoded])
        except Exception as exc:
            log.info("could not prepare a batch ahead", extra={"group": self.group, "error": repr(exc)})
            return None

    async def _finish(self, writing: _Writing, subscription: Subscription, stop: asyncio.Event) -> bool:
        """Wait for a batch's write and commit it; False when it failed and had to be handled again."""
        try:
            writing.outcomes.update(await writing.task or {})
            succeeded = True
        except Exception as exc:
            log.info(
                "a batch's write failed; handling it again on its own",
                extra={"group": self.group, "error": repr(exc)},
            )
            succeeded = False
            decoded, _ = self._decode(writing.records)  # the malformed ones were dead-lettered already
            if not await self._handle(decoded, stop, writing.outcomes):
                raise _Stopped from None
        committed = await self._commit(subscription, writing.records, writing.outcomes, writing.started)
        return succeeded and committed

    async def _commit(
        self, subscription: Subscription, records: list[Record], outcomes: Counter[str], started: float
    ) -> bool:
        """Commit a durable batch; False when the group rebalanced under it (nothing is lost: the
        partitions' new owner is delivered the records again, and the effects are idempotent)."""
        try:
            await self._retrying("commit", lambda: subscription.commit(records))
        except PartitionsRevoked as exc:
            log.warning(
                "commit raced a rebalance; the partitions' new owner handles these records again",
                extra={"group": self.group, "records": len(records), "error": repr(exc)},
            )
            self.handler.forget()  # worked out for partitions this member may no longer hold
            return False
        self.handled += len(records)
        CONSUMED_RECORDS.labels(group=self.group).inc(len(records))
        # One line per batch, so that a service that only succeeds still says what it does.
        log.info(
            "batch handled",
            extra={
                "group": self.group,
                "topics": sorted({record.topic for record in records}),
                "records": len(records),
                "duration_s": round(time.perf_counter() - started, 4),
                "outcomes": {outcome: count for outcome, count in outcomes.items() if count},
            },
        )
        return True

    async def _handle(
        self, batch: list[tuple[Record, Event]], stop: asyncio.Event, outcomes: Counter[str]
    ) -> bool:
        """Prepare and write a batch with nothing in flight; False when stopped before it was durable."""
        backoff = 0.2
        while batch:
            self.handler.forget()
            try:
                write = await self.handler.prepare([event for _, event in batch])
                outcomes.update(await write() or {})
                return True
            except Exception as exc:
                if not self.is_transient(exc):
                    if len(batch) == 1:
                        # What the failed prepare planned was never written: the next batch (or this
                        # record replayed from the DLQ) must not be planned on top of it.
                        self.handler.forget()
                        log.exception("handler rejected a record", extra={"group": self.group})
                        await self._dead_letter(batch[0][0], f"handler failed: {exc!r}")
                        outcomes["dead_lettered"] += 1
                        return True
                    # Retry one by one so that only the record at fault is dead-lettered.
                    for one in batch:
                        if not await self._handle([one], stop, outcomes):
                            return False
                    return True
                log.warning(
                    "handler hit a transient error; retrying the batch",
                    extra={"group": self.group, "error": repr(exc), "retry_in_s": backoff},
                )
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                    return False
                except TimeoutError:
                    backoff = min(backoff * 2, self.max_backoff_s)
        return True

    async def _retrying(self, what: str, step: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a bus call, waiting out a bus outage (BusUnavailable) with backoff."""
        backoff = 0.2
        while True:
            try:
                return await step()
            except BusUnavailable as exc:
                log.warning(
                    "the bus is unavailable; trying again",
                    extra={"group": self.group, "step": what, "error": repr(exc), "retry_in_s": backoff},
                )
                try:
                    await asyncio.wait_for(self._stop.wait(), backoff)
                    raise _Stopped from exc
                except TimeoutError:
                    backoff = min(backoff * 2, self.max_backoff_s)

    async def _dead_letter(self, record: Record, reason: str) -> None:
        log.warning(
            "dead-lettering record",
            extra={
                "group": self.group,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
        letter = dead_letter_for(record, reason, group=self.group)
        await self._retrying("dead-letter", lambda: self.bus.publish([letter]))
        DEAD_LETTERS.labels(topic=record.topic, group=self.group).inc()
