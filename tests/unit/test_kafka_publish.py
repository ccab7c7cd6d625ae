"""`KafkaBus.publish` raises only once every message it sent has its answer: the outbox relay looks on
the topic for what a failed publish got through, and a send still on its way would land after it
looked (and be published twice). No broker here: aiokafka's producer is replaced at its one seam."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from shared.bus.kafka import KafkaBus
from shared.bus.port import BusUnavailable, OutgoingMessage
from tests.support.waiting import eventually


class _AnsweredByHand:
    """A producer whose sends are answered by the test, one by one."""

    def __init__(self) -> None:
        self.answers: list[asyncio.Future[Any]] = []

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes, timestamp_ms: int | None = None
    ) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        return answer


async def test_a_failed_publish_raises_only_once_every_send_has_its_answer() -> None:
    bus = KafkaBus(["127.0.0.1:9"])
    producer = _AnsweredByHand()
    bus._producer = producer  # type: ignore[assignment]
    publishing = asyncio.create_task(
        bus.publish([OutgoingMessage("changes", "a", b"1"), OutgoingMessage("changes", "b", b"2")])
    )

    async def both_sent() -> bool:
        return len(producer.answers) == 2

    await eventually(both_sent, timeout_s=5, what="both messages handed to the producer")
    producer.answers[0].set_exception(KafkaTimeoutError())
    done, _ = await asyncio.wait({publishing}, timeout=0.2)
    assert not done, "raised while the second message could still land"

    producer.answers[1].set_result(None)
    with pytest.raises(BusUnavailable):
        await publishing
