"""One contract, two adapters: the in-memory bus and Kafka must behave the same for services.

Run against a real Kafka broker (see tests/conftest.py) and the in-memory bus alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from shared.bus.port import MessageBus, OutgoingMessage, Record, Subscription
from tests.support.waiting import eventually

PARTITIONS = 4


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[MessageBus]:
    if request.param == "memory":
        from shared.bus.memory import InMemoryBus

        bus: MessageBus = InMemoryBus(partitions=PARTITIONS)
    else:
        from shared.bus.kafka import KafkaBus

        bus = KafkaBus(request.getfixturevalue("kafka").bootstrap_servers.split(","))
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
async def topic(bus: MessageBus, request: pytest.FixtureRequest) -> str:
    name = f"contract.{uuid.uuid4().hex[:12]}"
    if request.node.callspec.params["bus"] == "kafka":
        from shared.bus.kafka import create_topics

        await create_topics(
            request.getfixturevalue("kafka").bootstrap_servers.split(","), [name], partitions=PARTITIONS
        )
    return name


def _messages(topic: str, keys: int, per_key: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(topic, f"key-{k}", f"{k}:{seq}".encode())
        for seq in range(per_key)
        for k in range(keys)
    ]


async def _drain(sub: Subscription, into: list[Record], *, expected: int, commit: bool) -> list[Record]:
    async def probe() -> bool:
        batch = await sub.fetch(max_records=100, timeout_s=0.2)
        into.extend(batch)
        if commit and batch:
            await sub.commit(batch)
        return len(into) >= expected

    await eventually(probe, timeout_s=60, what=f"{expected} records (have {len(into)})")
    return into


async def _settled(*subs: Subscription) -> None:
    """Poll every member until the group has given each one partitions and nothing overlaps."""

    async def probe() -> bool:
        await asyncio.gather(*(s.fetch(max_records=1, timeout_s=0.1) for s in subs))
        owned = [s.assignment() for s in subs]
        return all(owned) and sum(map(len, owned)) == PARTITIONS and not set.intersection(*map(set, owned))

    await eventually(probe, timeout_s=60, what="the consumer group to settle")


async def test_records_of_one_key_arrive_in_publish_order(bus: MessageBus, topic: str) -> None:
    await bus.publish(_messages(topic, keys=5, per_key=40))
    sub = await bus.subscribe([topic], group=f"g-{uuid.uuid4().hex}")
    records = await _drain(sub, [], expected=200, commit=True)
    await sub.close()

    sequences: dict[str, list[int]] = defaultdict(list)
    for record in records:
        key, seq = record.value.decode().split(":")
        assert record.key == f"key-{key}"
        sequences[key].append(int(seq))
    assert {k: s for k, s in sequences.items()} == {str(k): list(range(40)) for k in range(5)}


async def test_a_group_splits_partitions_and_delivers_each_record_once(bus: MessageBus, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex}"
    first = await bus.subscribe([topic], group=group)
    second = await bus.subscribe([topic], group=group)
    await _settled(first, second)

    await bus.publish(_messages(topic, keys=20, per_key=5))
    got_first: list[Record] = []
    got_second: list[Record] = []

    async def probe() -> bool:
        for sub, into in ((first, got_first), (second, got_second)):
            batch = await sub.fetch(max_records=100, timeout_s=0.1)
            into.extend(batch)
            await sub.commit(batch)
        return len(got_first) + len(got_second) >= 100

    await eventually(probe, timeout_s=60, what="100 records across the group")
    await first.close()
    await second.close()

    assert got_first and got_second, "both members should own partitions"
    delivered = [r.value for r in got_first + got_second]
    assert sorted(delivered) == sorted(m.value for m in _messages(topic, keys=20, per_key=5))
    assert {r.partition for r in got_first}.isdisjoint({r.partition for r in got_second})


async def test_uncommitted_records_are_redelivered_after_a_member_dies(bus: MessageBus, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex}"
    await bus.publish(_messages(topic, keys=4, per_key=5))
    doomed = await bus.subscribe([topic], group=group)
    committed = await _drain(doomed, [], expected=20, commit=True)

    await bus.publish([OutgoingMessage(topic, f"key-{k}", f"late:{k}".encode()) for k in range(4)])
    await _drain(doomed, [], expected=4, commit=False)
    await doomed.close()  # dies holding four fetched, uncommitted records

    heir = await bus.subscribe([topic], group=group)
    redelivered = await _drain(heir, [], expected=4, commit=True)
    extra = await heir.fetch(max_records=100, timeout_s=1.0)
    await heir.close()

    assert sorted(r.value for r in redelivered + extra) == sorted(f"late:{k}".encode() for k in range(4))
    assert len(committed) == 20


async def test_committing_a_batch_leaves_the_batches_fetched_after_it_to_be_redelivered(
    bus: MessageBus, topic: str
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    await bus.publish(_messages(topic, keys=4, per_key=10))
    doomed = await bus.subscribe([topic], group=group)
    first: list[Record] = []

    async def first_batch() -> bool:
        first.extend(await doomed.fetch(max_records=10, timeout_s=0.2))
        return bool(first)

    await eventually(first_batch, timeout_s=60, what="a first batch")
    later = await _drain(doomed, [], expected=40 - len(first), commit=False)
    assert len(first) <= 10 and later
    await doomed.commit(first)  # a pipelined consumer: batch N done, batch N+1 still being written
    await doomed.close()

    heir = await bus.subscribe([topic], group=group)
    redelivered = await _drain(heir, [], expected=len(later), commit=True)
    extra = await heir.fetch(max_records=100, timeout_s=1.0)
    await heir.close()

    assert sorted(r.value for r in redelivered + extra) == sorted(r.value for r in later)
    assert {r.value for r in first}.isdisjoint(r.value for r in redelivered + extra)


async def test_recent_reads_the_tail_of_every_partition_outside_any_group(
    bus: MessageBus, topic: str
) -> None:
    sent = _messages(topic, keys=8, per_key=5)
    await bus.publish(sent)
    everything = await bus.recent(topic, per_partition=100)
    tail = await bus.recent(topic, per_partition=3)

    assert sorted(r.value for r in everything) == sorted(m.value for m in sent)
    whole: dict[int, list[bytes]] = defaultdict(list)
    for record in everything:
        whole[record.partition].append(record.value)
    assert len(whole) > 1, "8 keys over 4 partitions land on more than one"
    short: dict[int, list[bytes]] = defaultdict(list)
    for record in tail:
        short[record.partition].append(record.value)
    assert short == {p: values[-3:] for p, values in whole.items()}


async def test_published_since_reads_from_the_first_record_at_or_after_a_time_to_the_end(
    bus: MessageBus, topic: str
) -> None:
    now = datetime.now(UTC)

    def stamped(label: str, at: datetime) -> list[OutgoingMessage]:
        return [OutgoingMessage(topic, f"key-{k}", f"{label}:{k}".encode(), timestamp=at) for k in range(8)]

    before = stamped("before", now - timedelta(hours=1))
    after = stamped("after", now - timedelta(minutes=10))
    late = stamped("late", now - timedelta(hours=2))  # stamped earlier, published later: still found
    for batch in (before, after, late):
        await bus.publish(batch)

    async def since(moment: datetime) -> list[Record]:
        return [record async for chunk in bus.published_since(topic, moment) for record in chunk]

    found = {r.value for r in await since(now - timedelta(minutes=30))}
    assert found == {m.value for m in after + late}
    assert await since(now + timedelta(minutes=1)) == []
    everything = await since(now - timedelta(days=1))
    assert sorted(r.value for r in everything) == sorted(m.value for m in before + after + late)


async def test_lag_is_what_the_log_holds_beyond_what_a_member_fetched(bus: MessageBus, topic: str) -> None:
    await bus.publish(_messages(topic, keys=4, per_key=10))
    member = await bus.subscribe([topic], group=f"g-{uuid.uuid4().hex}")
    fetched: list[Record] = []

    async def part_fetched() -> bool:
        fetched.extend(await member.fetch(max_records=5, timeout_s=0.2))
        return bool(fetched)

    await eventually(part_fetched, timeout_s=60, what="a first batch")
    lags = await member.lag()
    assert set(lags) <= member.assignment()
    assert sum(lags.values()) > 0, lags
    if set(lags) == member.assignment():  # Kafka knows a log end only once it fetched the partition
        assert sum(lags.values()) == 40 - len(fetched), lags
    await _drain(member, fetched, expected=40, commit=True)
    lags = await member.lag()
    await member.close()
    assert lags and set(lags.values()) == {0}, lags


async def test_lag_is_the_log_end_minus_the_committed_offset_and_falls_to_zero(
    bus: MessageBus, topic: str
) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    await bus.publish(_messages(topic, keys=4, per_key=5))
    assert await bus.lag([group]) == []  # nothing committed yet: no rows
    sub = await bus.subscribe([topic], group=group)
    try:
        first = await _drain(sub, [], expected=1, commit=False)
        await sub.commit(first[:1])
        rows = await bus.lag([group])
        assert rows and all(
            r.group == group and r.topic == topic and r.lag == r.end - r.committed for r in rows
        )
        assert sum(r.lag for r in rows) > 0
        await sub.commit(first)
        await _drain(sub, first, expected=20, commit=True)

        async def caught_up() -> bool:
            rows = await bus.lag([group])
            return sum(r.end for r in rows) == 20 and sum(r.lag for r in rows) == 0

        await eventually(caught_up, timeout_s=30, what="the group's lag to fall to zero")
    finally:
        await sub.close()


async def test_a_topic_that_does_not_exist_holds_nothing_and_says_so_at_once(bus: MessageBus) -> None:
    # An operator's dead-letter view counts the .dlq topics of every registered broker, created or not.
    async with asyncio.timeout(10):
        assert await bus.count(f"never-created-{uuid.uuid4().hex}") == 0


async def test_count_is_how_many_records_a_topic_holds(bus: MessageBus, topic: str) -> None:
    assert await bus.count(topic) == 0
    await bus.publish(_messages(topic, keys=3, per_key=4))
    assert await bus.count(topic) == 12


async def test_an_empty_value_reads_back_empty(bus: MessageBus, topic: str) -> None:
    await bus.publish([OutgoingMessage(topic, "gone", b"")])
    records = await bus.recent(topic, per_partition=5)
    assert [(r.key, r.value) for r in records] == [("gone", b"")]


async def test_a_record_says_when_it_was_published(bus: MessageBus, topic: str) -> None:
    before = time.time()
    await bus.publish(_messages(topic, keys=2, per_key=2))
    after = time.time()
    sub = await bus.subscribe([topic], group=f"g-{uuid.uuid4().hex[:8]}")
    try:
        records = await _drain(sub, [], expected=4, commit=False)
    finally:
        await sub.close()
    # Kafka's CreateTime has millisecond precision.
    assert all(r.published_at is not None and before - 0.001 <= r.published_at <= after for r in records)


class _Rebalances:
    """What an AssignmentListener was told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[str, frozenset[tuple[str, int]]]] = []
        self.counts: dict[str, int] = {}

    def revoked(self, partitions: frozenset[tuple[str, int]]) -> None:
        self.told.append(("revoked", partitions))

    def assigned(self, partitions: frozenset[tuple[str, int]], partition_counts: Mapping[str, int]) -> None:
        self.told.append(("assigned", partitions))
        self.counts.update(partition_counts)

    @property
    def held(self) -> frozenset[tuple[str, int]]:
        """What the last news says this member holds."""
        for what, partitions in reversed(self.told):
            return partitions if what == "assigned" else frozenset()
        return frozenset()


async def test_a_listener_is_told_of_every_rebalance_with_the_topics_partition_counts(
    bus: MessageBus, topic: str
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    heard_first, heard_second = _Rebalances(), _Rebalances()
    first = await bus.subscribe([topic], group=group, listener=heard_first)

    async def holds_everything() -> bool:
        await first.fetch(max_records=1, timeout_s=0.1)
        return len(first.assignment()) == PARTITIONS

    await eventually(holds_everything, timeout_s=60, what="the only member to hold every partition")
    assert heard_first.held == first.assignment() == {(topic, p) for p in range(PARTITIONS)}
    assert heard_first.counts == {topic: PARTITIONS}

    second = await bus.subscribe([topic], group=group, listener=heard_second)
    await _settled(first, second)
    assert heard_first.held == first.assignment() and heard_second.held == second.assignment()
    gave_up = [partitions for what, partitions in heard_first.told if what == "revoked"]
    assert any(gave_up), "the first member gave its partitions up before they were dealt again"
    await first.close()
    await second.close()


async def test_a_fetch_brings_what_was_published_after_what_it_already_held(
    bus: MessageBus, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka holds what its last fetch brought, records that may have waited out a whole batch of
    the consumer's; a fetch tops them up with what reached Kafka since, rather than leave that to
    wait out another batch."""
    from shared.bus import kafka

    # What comes, not how soon: not the speed of the machine.
    monkeypatch.setattr(kafka, "_TOP_UP_WAIT_MS", 10_000)
    member = await bus.subscribe([topic], group=f"g-{uuid.uuid4().hex}")
    await bus.publish([OutgoingMessage(topic, "k", b"first")])
    await _drain(member, [], expected=1, commit=False)
    await bus.publish([OutgoingMessage(topic, "k", b"held")])

    async def held() -> bool:  # Kafka: the fetch that taking "first" sent came back with it
        return sum((await member.lag()).values()) == 1

    await eventually(held, what="the member to hold the second record")
    await bus.publish([OutgoingMessage(topic, "k", b"since")])
    assert [r.value for r in await member.fetch(max_records=100, timeout_s=5)] == [b"held", b"since"]
    await member.close()
