"""An independent subscriber, as a downstream service would be: it keeps every record of a topic in
the order each partition delivered it, and rides out Kafka outages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

from shared.bus.kafka import KafkaBus, KafkaSubscription
from shared.bus.port import BusUnavailable
from shared.events import HoldingsChanged, decode_event


@dataclass
class TopicObserver:
    bootstrap_servers: str
    namespace: str
    topic: str
    values: list[bytes] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        bus = KafkaBus(self.bootstrap_servers.split(","), namespace=self.namespace)
        await bus.start()
        subscription = await bus.subscribe([self.topic], group=f"observer-{uuid.uuid4().hex[:6]}")
        self._task = asyncio.create_task(self._run(bus, subscription))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def changes(self) -> list[HoldingsChanged]:
        """The HoldingsChanged seen (holdings.changes also carries AccountRemoved)."""
        return [
            decode_event(HoldingsChanged, value)
            for value in self.values
            if json.loads(value).get("event_type") != "account_removed"
        ]

    def repeated_ids(self) -> int:
        """Records whose event id came before."""
        ids = Counter(json.loads(value)["event_id"] for value in self.values)
        return sum(n - 1 for n in ids.values() if n > 1)

    async def _run(self, bus: KafkaBus, subscription: KafkaSubscription) -> None:
        try:
            while not self._stop.is_set():
                try:
                    records = await subscription.fetch(max_records=1000, timeout_s=0.5)
                except BusUnavailable:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 1.0)  # Kafka is away: ask again
                    continue
                self.values.extend(record.value for record in records)
        finally:
            with contextlib.suppress(BusUnavailable):
                await subscription.close()
            await bus.close()
