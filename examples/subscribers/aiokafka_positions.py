"""A plain aiokafka subscriber: bootstrap each account's positions from `holdings.current`, then
follow `holdings.changes` (and `holdings.current`) from where the bootstrap ended.

    KAFKA_BOOTSTRAP_SERVERS=localhost:9092 python -m examples.subscribers.aiokafka_positions

No consumer group, so nothing is committed: a restart bootstraps again, which the compacted topic
keeps cheap. (A subscriber that must not re-read would commit its state and offsets together.)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from examples.subscribers.positions import on_change, on_current


class Positions:
    def __init__(self, servers: str, *, namespace: str = "") -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self._current, self._changes = f"{namespace}holdings.current", f"{namespace}holdings.changes"
        # No group: every partition of both topics is this consumer's.
        self._consumer = AIOKafkaConsumer(
            self._current, self._changes, bootstrap_servers=servers, enable_auto_commit=False
        )

    async def bootstrap(self) -> None:
        """Read `holdings.current` to its end; then follow `holdings.changes` from the end it had
        before (noted first: a change published meanwhile is followed, or already in the state)."""
        await self._consumer.start()
        changes = self._partitions(self._changes)
        follow_from = await self._consumer.end_offsets(changes)
        current = self._partitions(self._current)
        ends = await self._consumer.end_offsets(current)
        await self._consumer.seek_to_beginning(*current)
        for partition, offset in follow_from.items():
            self._consumer.seek(partition, offset)
        while not await self._reached(ends):
            await self.step(timeout_ms=1000)

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all([await self._consumer.position(p) >= end for p, end in ends.items()])

    async def step(self, *, timeout_ms: int) -> None:
        """Apply what arrives within `timeout_ms`, in each partition's order."""
        for partition, records in (await self._consumer.getmany(timeout_ms=timeout_ms)).items():
            apply = on_current if partition.topic == self._current else on_change
            for record in records:
                account = record.key.decode()
                state = apply(self.accounts.get(account), record.value)
                if state is None:
                    self.accounts.pop(account, None)
                else:
                    self.accounts[account] = state

    def _partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or ())]

    async def close(self) -> None:
        await self._consumer.stop()


async def main() -> None:
    positions = Positions(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        namespace=os.environ.get("KAFKA_NAMESPACE", ""),
    )
    await positions.bootstrap()
    print(f"bootstrapped {len(positions.accounts)} accounts")
    try:
        while True:
            await positions.step(timeout_ms=1000)
    finally:
        await positions.close()


if __name__ == "__main__":
    asyncio.run(main())
