"""Kafka adapter of the bus port, on aiokafka.

The producer is idempotent with acks=all, so `publish` returns only when every replica in sync has
the messages. Consumers never auto-commit: services commit after their effect is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.bus.port import BusUnavailable, OutgoingMessage, Record


class KafkaBus:
    """`namespace` prefixes every topic and group on the wire; services only see the plain names."""

    def __init__(
        self, bootstrap_servers: Sequence[str], *, client_id: str = "portfolio-sync", namespace: str = ""
    ) -> None:
        self._servers = list(bootstrap_servers)
        self._client_id = client_id
        self._namespace = namespace
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BusUnavailable(f"cannot reach Kafka at {','.join(self._servers)}: {exc}") from exc
        self._producer = producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaBus.publish before start()")
        producer = self._producer
        try:
            pending = [
                await producer.send(self._namespace + m.topic, m.value, key=m.key.encode()) for m in messages
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not accept {len(messages)} message(s): {exc!r}") from exc

    async def subscribe(self, topics: Sequence[str], *, group: str) -> KafkaSubscription:
        consumer = AIOKafkaConsumer(
            *(self._namespace + t for t in topics),
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            group_id=self._namespace + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        return KafkaSubscription(consumer, len(self._namespace))


class KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer, namespace_length: int) -> None:
        self._consumer = consumer
        self._strip = namespace_length

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Record]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            Record(
                m.topic[self._strip :],
                m.partition,
                m.offset,
                m.key.decode() if m.key is not None else None,
                m.value or b"",
            )
            for messages in batches.values()
            for m in messages
        ]

    def assignment(self) -> frozenset[tuple[str, int]]:
        return frozenset((tp.topic[self._strip :], tp.partition) for tp in self._consumer.assignment())

    async def commit(self) -> None:
        await self._consumer.commit()

    async def close(self) -> None:
        await self._consumer.stop()


async def create_topics(
    bootstrap_servers: Sequence[str], topics: Sequence[str], *, partitions: int, namespace: str = ""
) -> list[str]:
    """Create the topics that do not exist yet; return the names created (with the namespace)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=list(bootstrap_servers))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [namespace + t for t in topics if namespace + t not in existing]
        if missing:
            # Another process may create them meanwhile: the outcome we wanted, so not an error.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        await admin.close()
