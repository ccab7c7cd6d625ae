from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from shared.bus.consumer import EventConsumer
from shared.bus.dead_letters import DeadLetter
from shared.bus.memory import InMemoryBus
from shared.bus.port import OutgoingMessage
from shared.events import Event, SyncRequested, SyncTrigger
from shared.topics import dead_letters
from tests.support.waiting import eventually

TOPIC = "unit.requests"


def _request() -> SyncRequested:
    return SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL)


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
    consumer = EventConsumer(bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=handler)
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
    consumer = EventConsumer(bus=bus, group="unit", event_types={TOPIC: SyncRequested}, handler=flaky)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def done() -> bool:
        return len(handled) == 3

    await eventually(done, timeout_s=10, what="the batch to be handled after two failures")
    stop.set()
    await task
    assert bus.records(dead_letters(TOPIC)) == []
    assert len(attempts) >= 3
