from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from shared.bus.consumer import EventConsumer, OneStep, Write
from shared.bus.dead_letters import DeadLetter
from shared.bus.memory import InMemoryBus
from shared.bus.port import AssignmentListener, OutgoingMessage, PartitionsRevoked, Record, Subscription
from shared.events import Event, SyncRequested, SyncTrigger
from shared.topics import dead_letters
from tests.support.waiting import eventually

TOPIC = "unit.requests"


def _request(account_id: uuid.UUID | None = None) -> SyncRequested:
    return SyncRequested(account_id=account_id or uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL)


def _one_account(count: int) -> list[SyncRequested]:
    """Requests of one account: one partition, so they come in publish order."""
    account_id = uuid.uuid4()
    return [_request(account_id) for _ in range(count)]


async def test_malformed_and_rejected_records_go_to_the_dlq_and_the_rest_is_handled(bus: InMemoryBus) -> None:
    poison = _request()
    good = [_request() for _ in range(5)]
    handled: list[Event] = []

    async def handler(events: Sequence[Event]) -> None:
        if poison in events:
            raise ValueError("cannot apply this one")
        handled.extend(events)

    await bus.publish(
        [OutgoingMessage.of(TOPIC, e) for e in good[:2]]
        + [OutgoingMessage(TOPIC, "k", b"{broken"), OutgoingMessage.of(TOPIC, poison)]
        + [OutgoingMessage.of(TOPIC, e) for e in good[2:]]
    )
    consumer = EventConsumer(
        bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=OneStep(handler)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def all_seen() -> bool:
        return len(handled) == 5 and len(bus.records(dead_letters(TOPIC))) == 2

    await eventually(all_seen, timeout_s=10, what="5 handled and 2 dead-lettered")
    stop.set()
    await task

    assert sorted(e.event_id for e in handled) == sorted(e.event_id for e in good)
    letters = [DeadLetter.model_validate_json(r.value) for r in bus.records(dead_letters(TOPIC))]
    reasons = sorted(letter.error for letter in letters)
    assert reasons[0].startswith("handler failed: ValueError('cannot apply this one')")
    assert reasons[1].startswith("not a valid SyncRequested")
    assert {letter.original_value() for letter in letters} == {b"{broken", poison.to_bytes()}


async def test_a_transient_error_is_retried_without_losing_or_dead_lettering(bus: InMemoryBus) -> None:
    attempts: list[int] = []
    handled: list[Event] = []

    async def flaky(events: Sequence[Event]) -> None:
        attempts.append(len(events))
        if len(attempts) < 3:
            raise ConnectionError("database restarting")
        handled.extend(events)

    await bus.publish([OutgoingMessage.of(TOPIC, _request()) for _ in range(3)])
    consumer = EventConsumer(
        bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=OneStep(flaky)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def done() -> bool:
        return len(handled) == 3

    await eventually(done, timeout_s=10, what="the batch to be handled after two failures")
    stop.set()
    await task
    assert bus.records(dead_letters(TOPIC)) == []
    assert len(attempts) >= 3


class Recording:
    """A two-step handler that records the order of prepares and writes, and can fail a write."""

    def __init__(self, *, fail_write_of: set[uuid.UUID] = frozenset()) -> None:  # type: ignore[assignment]
        self.log: list[tuple[str, int]] = []
        self.written: list[uuid.UUID] = []
        self.forgotten = 0
        self.fail_write_of = set(fail_write_of)
        self.release = asyncio.Event()
        self._batches = 0

    async def prepare(self, events: Sequence[Event]) -> Write:
        self._batches += 1
        number = self._batches
        self.log.append(("prepare", number))

        async def write() -> None:
            await self.release.wait()
            failing = self.fail_write_of & {e.event_id for e in events}
            if failing:
                self.fail_write_of -= failing  # fails once: handled again, it succeeds
                raise RuntimeError("write failed")
            self.written.extend(e.event_id for e in events)
            self.log.append(("written", number))

        return write

    def forget(self) -> None:
        self.forgotten += 1


async def _run_until(consumer: EventConsumer, done: Callable[[], Awaitable[bool]], what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await eventually(done, timeout_s=10, what=what)
    stop.set()
    await task


async def test_the_next_batch_is_prepared_while_the_previous_one_is_written(bus: InMemoryBus) -> None:
    requests = _one_account(6)
    await bus.publish([OutgoingMessage.of(TOPIC, e) for e in requests])
    handler = Recording()
    consumer = EventConsumer(
        bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=handler, max_records=2
    )

    async def second_prepared_before_first_written() -> bool:
        if ("prepare", 2) in handler.log:
            handler.release.set()
        return len(handler.written) == 6

    await _run_until(consumer, second_prepared_before_first_written, "all six written")
    assert handler.log.index(("prepare", 2)) < handler.log.index(("written", 1))
    assert [step for step in handler.log if step[0] == "written"] == [("written", n) for n in (1, 2, 3)]
    assert handler.written == [e.event_id for e in requests]  # one partition: in order, once each
    assert handler.forgotten == 0


async def test_a_failed_write_voids_what_was_prepared_on_it_and_both_are_handled_again(
    bus: InMemoryBus,
) -> None:
    requests = _one_account(6)
    await bus.publish([OutgoingMessage.of(TOPIC, e) for e in requests])
    handler = Recording(fail_write_of={requests[2].event_id})  # the second batch's write fails once
    handler.release.set()
    consumer = EventConsumer(
        bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=handler, max_records=2
    )

    async def all_written() -> bool:
        return len(handler.written) == 6

    await _run_until(consumer, all_written, "all six written")
    assert handler.written == [e.event_id for e in requests]
    assert handler.forgotten >= 2  # before handling the failed batch again, and the one prepared on it
    assert bus.records(dead_letters(TOPIC)) == []
    heir = await bus.subscribe([TOPIC], group="unit")
    assert await heir.fetch(max_records=10, timeout_s=0.1) == [], "every offset was committed"


class KeepsOnlyIds:
    """A two-step handler whose write keeps the events' ids only, holding the first write until
    the second batch is prepared; it watches the events it was handed (weak references)."""

    def __init__(self) -> None:
        self.watched: list[list[weakref.ref[Event]]] = []
        self.written: list[uuid.UUID] = []
        self.release = asyncio.Event()

    async def prepare(self, events: Sequence[Event]) -> Write:
        self.watched.append([weakref.ref(e) for e in events])
        ids = [e.event_id for e in events]

        async def write() -> None:
            await self.release.wait()
            self.written.extend(ids)

        return write

    def forget(self) -> None:
        pass


async def test_a_prepared_batchs_events_are_let_go_of_while_the_previous_batch_is_written(
    bus: InMemoryBus,
) -> None:
    requests = _one_account(4)
    await bus.publish([OutgoingMessage.of(TOPIC, e) for e in requests])
    handler = KeepsOnlyIds()
    consumer = EventConsumer(
        bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=handler, max_records=2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def second_prepared() -> bool:
        return len(handler.watched) == 2

    await eventually(second_prepared, timeout_s=10, what="the second batch prepared")
    gc.collect()
    assert [ref() for ref in handler.watched[1]] == [None, None], "not kept while the first is written"
    handler.release.set()

    async def all_written() -> bool:
        return len(handler.written) == 4

    await eventually(all_written, timeout_s=10, what="all four written")
    stop.set()
    await task
    assert handler.written == [e.event_id for e in requests]


async def test_decoding_ahead_hands_every_record_over_once_in_order_and_dead_letters_the_malformed(
    bus: InMemoryBus,
) -> None:
    requests = _one_account(7)
    key = requests[0].key
    messages = [OutgoingMessage.of(TOPIC, e) for e in requests]
    # Batches of three, the first of each decoded ahead: one malformed record decoded ahead (the
    # second batch's first), one with the rest of its batch (the third's second).
    messages.insert(3, OutgoingMessage(TOPIC, key, b"{broken ahead"))
    messages.insert(7, OutgoingMessage(TOPIC, key, b"{broken later"))
    await bus.publish(messages)
    handler = Recording()
    handler.release.set()
    consumer = EventConsumer(
        bus=bus,
        group="unit",
        event_types={TOPIC: SyncRequested},
        handler=handler,
        max_records=3,
        decode_ahead=1,
    )

    async def all_seen() -> bool:
        return len(handler.written) == 7 and len(bus.records(dead_letters(TOPIC))) == 2

    await _run_until(consumer, all_seen, "seven written and two dead-lettered")
    assert handler.written == [e.event_id for e in requests]  # in order, once each
    letters = [DeadLetter.model_validate_json(r.value) for r in bus.records(dead_letters(TOPIC))]
    assert sorted(letter.original_value() for letter in letters) == [b"{broken ahead", b"{broken later"]
    heir = await bus.subscribe([TOPIC], group="unit")
    assert await heir.fetch(max_records=10, timeout_s=0.1) == [], "every offset was committed"


class _Wrapped:
    """A subscription that passes everything to `inner`; subclasses change what a test watches."""

    def __init__(self, inner: Subscription) -> None:
        self.inner = inner

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Record]:
        return await self.inner.fetch(max_records=max_records, timeout_s=timeout_s)

    async def commit(self, records: Sequence[Record]) -> None:
        await self.inner.commit(records)

    def assignment(self) -> frozenset[tuple[str, int]]:
        return self.inner.assignment()

    async def lag(self) -> dict[tuple[str, int], int]:
        return await self.inner.lag()

    async def close(self) -> None:
        await self.inner.close()


class _CountedFetches(_Wrapped):
    """A subscription that tells when it has been asked to fetch a second time."""

    def __init__(self, inner: Subscription) -> None:
        super().__init__(inner)
        self.fetches = 0
        self.second_fetch = asyncio.Event()

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Record]:
        self.fetches += 1
        if self.fetches == 2:
            self.second_fetch.set()
        return await self.inner.fetch(max_records=max_records, timeout_s=timeout_s)


class _CountingBus(InMemoryBus):
    subscription: _CountedFetches

    async def subscribe(  # type: ignore[override]
        self, topics: Sequence[str], *, group: str, listener: AssignmentListener | None = None
    ) -> Subscription:
        self.subscription = _CountedFetches(await super().subscribe(topics, group=group, listener=listener))
        return self.subscription


class AwaitsTheNextFetch(Recording):
    """Prepares its first batch only once the consumer has asked for the next one (or 5 s passed)."""

    def __init__(self, bus: _CountingBus) -> None:
        super().__init__()
        self.bus = bus
        self.next_fetched_while_preparing: bool | None = None

    async def prepare(self, events: Sequence[Event]) -> Write:
        if self.next_fetched_while_preparing is None:
            try:
                await asyncio.wait_for(self.bus.subscription.second_fetch.wait(), 5)
                self.next_fetched_while_preparing = True
            except TimeoutError:
                self.next_fetched_while_preparing = False
        return await super().prepare(events)


async def test_with_decode_ahead_the_next_batch_is_fetched_while_this_one_is_prepared() -> None:
    bus = _CountingBus()
    requests = _one_account(4)
    await bus.publish([OutgoingMessage.of(TOPIC, e) for e in requests])
    handler = AwaitsTheNextFetch(bus)
    handler.release.set()
    consumer = EventConsumer(
        bus=bus,
        group="unit",
        event_types={TOPIC: SyncRequested},
        handler=handler,
        max_records=2,
        decode_ahead=1,
    )

    async def all_written() -> bool:
        return len(handler.written) == 4

    await _run_until(consumer, all_written, "all four written")
    assert handler.next_fetched_while_preparing is True
    assert handler.written == [e.event_id for e in requests]


async def test_a_wrapped_57p03_is_waited_out_not_dead_lettered(bus: InMemoryBus) -> None:
    # As the ledger saw it under a Postgres restart: asyncpg's error wrapped as a plain DBAPIError.
    shutting_down = asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
    attempts = 0
    handled: list[Event] = []

    async def flaky(events: Sequence[Event]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:  # the pipelined write, then the retries on its own: the restart lasts
            raise DBAPIError.instance("insert", None, shutting_down, Exception)  # type: ignore[arg-type]
        handled.extend(events)

    request = _request()
    await bus.publish([OutgoingMessage.of(TOPIC, request)])
    consumer = EventConsumer(
        bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=OneStep(flaky), max_backoff_s=0.1
    )

    async def done() -> bool:
        return len(handled) == 1

    await _run_until(consumer, done, "the record to be handled once the database is back")
    assert bus.records(dead_letters(TOPIC)) == []
    assert [e.event_id for e in handled] == [request.event_id]


class _RevokedOnce(_Wrapped):
    """A subscription whose first commit races a rebalance (the partitions went to another member)."""

    def __init__(self, inner: Subscription, error: Exception) -> None:
        super().__init__(inner)
        self.error: Exception | None = error
        self.failed_commits = 0

    async def commit(self, records: Sequence[Record]) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            self.failed_commits += 1
            raise error
        await self.inner.commit(records)


class _RebalancingBus(InMemoryBus):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.subscriptions: list[_RevokedOnce] = []

    async def subscribe(  # type: ignore[override]
        self, topics: Sequence[str], *, group: str, listener: AssignmentListener | None = None
    ) -> Subscription:
        inner = await super().subscribe(topics, group=group, listener=listener)
        subscription = _RevokedOnce(inner, self.error)
        self.subscriptions.append(subscription)
        return subscription


async def test_a_commit_that_races_a_rebalance_does_not_end_the_loop() -> None:
    bus = _RebalancingBus(PartitionsRevoked("commit failed: the group rebalanced"))
    handler = Recording()
    handler.release.set()
    first = _one_account(3)
    await bus.publish([OutgoingMessage.of(TOPIC, e) for e in first])
    consumer = EventConsumer(bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await eventually(
        lambda: _true(bus.subscriptions and bus.subscriptions[0].failed_commits == 1),
        timeout_s=10,
        what="a commit to fail",
    )
    later = _one_account(2)
    await bus.publish([OutgoingMessage.of(TOPIC, e) for e in later])

    async def later_written() -> bool:
        return {e.event_id for e in later} <= set(handler.written)

    await eventually(later_written, timeout_s=10, what="the loop to carry on after the failed commit")
    assert not task.done()
    assert handler.forgotten >= 1  # what was worked out for the revoked partitions was dropped
    stop.set()
    await task
    assert bus.records(dead_letters(TOPIC)) == []


async def _true(value: object) -> bool:
    return bool(value)


async def test_kafka_commit_failed_error_becomes_partitions_revoked() -> None:
    from aiokafka.errors import CommitFailedError
    from aiokafka.structs import TopicPartition

    from shared.bus.kafka import KafkaSubscription

    class FakeConsumer:
        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition(TOPIC, 0)}

        async def commit(self, offsets: object) -> None:
            raise CommitFailedError("Commit cannot be completed since the group has already rebalanced")

    subscription = KafkaSubscription(FakeConsumer(), "")  # type: ignore[arg-type]
    with pytest.raises(PartitionsRevoked):
        await subscription.commit([Record(TOPIC, 0, 7, "k", b"{}")])
