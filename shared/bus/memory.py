"""In-memory bus over asyncio: the embedded mode's bus and the fast unit layer's.

It keeps Kafka's semantics where services rely on them (see `port.py`): keyed partitions, consumer
groups that split partitions, committed offsets, redelivery after a member leaves uncommitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count

from shared.bus.port import AssignmentListener, OutgoingMessage, PartitionLag, Record
from shared.events import utc_now

TopicPartition = tuple[str, int]


@dataclass
class _Group:
    members: list[InMemorySubscription] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class InMemoryBus:
    def __init__(self, *, partitions: int = 4) -> None:
        self._partitions = partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._groups: defaultdict[str, _Group] = defaultdict(_Group)
        self._changed = asyncio.Condition()

    @property
    def partitions(self) -> int:
        """Partitions of every topic."""
        return self._partitions

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for group in self._groups.values():
            group.members.clear()

    def _log(self, topic: str) -> list[list[Record]]:
        return self._logs.setdefault(topic, [[] for _ in range(self._partitions)])

    def partition_for(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self._partitions

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        now = utc_now()
        for message in messages:
            partition = self.partition_for(message.key)
            log = self._log(message.topic)[partition]
            stamp = message.timestamp or now
            log.append(
                Record(message.topic, partition, len(log), message.key, message.value, stamp.timestamp())
            )
        async with self._changed:
            self._changed.notify_all()

    async def subscribe(
        self, topics: Sequence[str], *, group: str, listener: AssignmentListener | None = None
    ) -> InMemorySubscription:
        for topic in topics:
            self._log(topic)
        subscription = InMemorySubscription(self, tuple(topics), self._groups[group], listener)
        await self._rebalance(subscription.group, join=subscription)
        return subscription

    async def _rebalance(
        self,
        group: _Group,
        *,
        join: InMemorySubscription | None = None,
        leave: InMemorySubscription | None = None,
    ) -> None:
        if join is not None:
            group.members.append(join)
        if leave is not None and leave in group.members:
            group.members.remove(leave)
        group.generation += 1
        async with self._changed:
            self._changed.notify_all()

    async def recent(self, topic: str, *, per_partition: int) -> list[Record]:
        return [record for partition in self._log(topic) for record in partition[-per_partition:]]

    async def published_since(self, topic: str, since: datetime) -> AsyncGenerator[list[Record], None]:
        after = since.timestamp()
        for partition in self._log(topic):
            # Like Kafka's offsets_for_times: from the first record at or after `since`, to the end.
            first = next(
                (i for i, r in enumerate(partition) if (r.published_at or 0) >= after), len(partition)
            )
            yield partition[first:]

    async def count(self, topic: str) -> int:
        return sum(len(partition) for partition in self._log(topic))

    async def lag(self, groups: Sequence[str]) -> list[PartitionLag]:
        found = [(name, self._groups[name]) for name in groups if name in self._groups]
        return [
            PartitionLag(name, topic, partition, committed, len(self._log(topic)[partition]))
            for name, group in found
            for (topic, partition), committed in sorted(group.committed.items())
        ]

    def compacted(self, topic: str) -> dict[str, Record]:
        """What a reader from the start of compacted `topic` finds once Kafka has compacted it: each
        key's latest record, but a key whose latest is a tombstone (Kafka drops those in time)."""
        latest = {record.key: record for record in self.records(topic) if record.key is not None}
        return {key: record for key, record in latest.items() if record.value}

    def records(self, topic: str) -> list[Record]:
        """Every record of `topic`, partition by partition: for tests and the demo's report."""
        return [record for partition in self._log(topic) for record in partition]

    def assignment(self, member: InMemorySubscription) -> list[TopicPartition]:
        group = member.group
        subscribed = sorted(
            {(t, p) for m in group.members for t in m.topics for p in range(self._partitions)}
        )
        index = group.members.index(member)
        mine = [tp for i, tp in enumerate(subscribed) if i % len(group.members) == index]
        return [tp for tp in mine if tp[0] in member.topics]

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        return self._log(tp[0])[tp[1]][offset : offset + limit]

    async def wait_for_change(self, timeout_s: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)


_member_ids = count()


class InMemorySubscription:
    def __init__(
        self,
        bus: InMemoryBus,
        topics: tuple[str, ...],
        group: _Group,
        listener: AssignmentListener | None = None,
    ) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self._listener = listener
        self.member_id = next(_member_ids)
        self._generation = -1
        self._positions: dict[TopicPartition, int] = {}
        self._closed = False

    def _refresh_assignment(self) -> None:
        # Like a Kafka rebalance: every partition restarts from the group's committed offset.
        if self._generation != self.group.generation:
            self._generation = self.group.generation
            if self._listener is not None:
                self._listener.revoked(frozenset(self._positions))
            self._positions = {tp: self.group.committed.get(tp, 0) for tp in self.bus.assignment(self)}
            if self._listener is not None:
                counts = {topic: self.bus.partitions for topic in self.topics}
                self._listener.assigned(frozenset(self._positions), counts)

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            raise RuntimeError("subscription is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._refresh_assignment()
            batch: list[Record] = []
            for tp, position in self._positions.items():
                records = self.bus.read(tp, position, max_records - len(batch))
                if records:
                    batch.extend(records)
                    self._positions[tp] = position + len(records)
                if len(batch) >= max_records:
                    break
            remaining = deadline - loop.time()
            if batch or remaining <= 0:
                return batch
            await self.bus.wait_for_change(remaining)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.bus.assignment(self)) if not self._closed else frozenset()

    async def lag(self) -> dict[TopicPartition, int]:
        self._refresh_assignment()
        return {tp: len(self.bus._log(tp[0])[tp[1]]) - position for tp, position in self._positions.items()}

    async def commit(self, records: Sequence[Record]) -> None:
        held = self.assignment()
        for record in records:
            tp = (record.topic, record.partition)
            if tp in held:
                self.group.committed[tp] = max(self.group.committed.get(tp, 0), record.offset + 1)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._listener is not None:
                self._listener.revoked(frozenset(self._positions))
            await self.bus._rebalance(self.group, leave=self)
