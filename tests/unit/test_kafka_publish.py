"""`KafkaBus.publish` raises only once every message it sent has its answer: the outbox relay looks on
the topic for what a failed publish got through, and a send still on its way would land after it
looked (and be published twice). Several messages go as record batches, each partition's in publish
order, on the partition a single send would take. No broker here: aiokafka's producer is replaced at
its one seam."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from shared.bus.kafka import KafkaBus
from shared.bus.partitioner import partition
from shared.bus.port import BusUnavailable, OutgoingMessage
from tests.support.waiting import eventually

PARTITIONS = [0, 1, 2, 3]


class _Batch:
    """A record batch that holds `room` records."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes, bytes | None, int | None]] = []

    def append(self, *, key: bytes, value: bytes | None, timestamp: int | None) -> object | None:
        if len(self.records) == self.room:
            return None
        self.records.append((key, value, timestamp))
        return object()


class _AnsweredByHand:
    """A producer whose sends and batches are answered by the test, one by one."""

    def __init__(self, room: int = 100, *, at_once: bool = False) -> None:
        self.room = room
        self.at_once = at_once  # answer each send as it is made
        self.answers: list[asyncio.Future[Any]] = []
        self.sent: list[tuple[str, int | None, list[tuple[bytes, bytes | None, int | None]]]] = []

    def _answer(self) -> asyncio.Future[Any]:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        if self.at_once:
            answer.set_result(None)
        return answer

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes, timestamp_ms: int | None = None
    ) -> Any:
        self.sent.append((topic, None, [(key, value, timestamp_ms)]))
        return self._answer()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    def create_batch(self) -> _Batch:
        return _Batch(self.room)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch.records))
        return self._answer()


def _bus(producer: _AnsweredByHand) -> KafkaBus:
    bus = KafkaBus(["127.0.0.1:9"], namespace="ns.")
    bus._producer = producer  # type: ignore[assignment]
    return bus


async def test_a_failed_publish_raises_only_once_every_send_has_its_answer() -> None:
    producer = _AnsweredByHand()
    publishing = asyncio.create_task(
        _bus(producer).publish([OutgoingMessage("changes", "a", b"1"), OutgoingMessage("current", "a", b"2")])
    )

    async def both_sent() -> bool:
        return len(producer.answers) == 2

    await eventually(both_sent, timeout_s=5, what="both batches handed to the producer")
    producer.answers[0].set_exception(KafkaTimeoutError())
    done, _ = await asyncio.wait({publishing}, timeout=0.2)
    assert not done, "raised while the second batch could still land"

    producer.answers[1].set_result(None)
    with pytest.raises(BusUnavailable):
        await publishing


async def test_one_message_is_sent_on_its_own_with_its_timestamp() -> None:
    producer = _AnsweredByHand(at_once=True)
    at = datetime(2026, 11, 30, 12, 0, 0, 1000, tzinfo=UTC)
    await _bus(producer).publish([OutgoingMessage("changes", "a", b"", at)])
    assert producer.sent == [("ns.changes", None, [(b"a", None, 1_796_040_000_001)])]


async def test_several_go_in_batches_per_partition_in_publish_order() -> None:
    producer = _AnsweredByHand(room=2, at_once=True)
    keys = [f"account-{n % 5}" for n in range(12)]
    messages = [OutgoingMessage("changes", key, str(n).encode()) for n, key in enumerate(keys)]
    await _bus(producer).publish(messages)
    assert all(len(records) <= 2 for _, _, records in producer.sent), "a full batch is sent, a new one begun"
    on_partition: dict[int | None, list[tuple[bytes, bytes | None]]] = {}
    for topic, number, records in producer.sent:
        assert topic == "ns.changes"
        on_partition.setdefault(number, []).extend((key, value) for key, value, _ in records)
    expected: dict[int | None, list[tuple[bytes, bytes | None]]] = {}
    for m in messages:
        number = partition(m.key.encode(), PARTITIONS, PARTITIONS)
        expected.setdefault(number, []).append((m.key.encode(), m.value))
    assert on_partition == expected
