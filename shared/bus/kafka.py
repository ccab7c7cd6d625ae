"""Kafka adapter of the bus port, on aiokafka.

The producer is idempotent with acks=all, so `publish` returns only when every replica in sync has
the messages. Consumers never auto-commit: services commit after their effect is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import CoordinationType
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError

from shared import topics as topic_names
from shared.bus.port import (
    AssignmentListener,
    BusUnavailable,
    OutgoingMessage,
    PartitionLag,
    PartitionsRevoked,
    Record,
)

# What one fetch may bring per partition. aiokafka's default (1 MiB) holds some 250 snapshots of
# twenty holdings, which capped the ledger's batches at a thousand events on four partitions, half
# what it asks for; each partition's next fetch is sent only once its records are taken.
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
# A member that does not fetch again within this long leaves its group and its batch is delivered again
# (aiokafka's default, spelled out): nothing may hold a batch that long. The fetcher's inline wait for a
# retry's not_before is bounded far below it (Settings.fetcher_max_inline_wait_seconds, at most 60 s).
MAX_POLL_INTERVAL_MS = 300_000
# How long `subscribe` waits, quietly, for a group coordinator that a starting broker is still loading.
COORDINATOR_WAIT_S = 60.0
_COORDINATOR_POLL_S = 0.2

# A compacted topic keeps each key's newest message; small segments (one an hour) let the cleaner
# reach them soon, and a tombstone is kept a day so that a slow reader still sees the key go.
_COMPACTED_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(3_600_000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(86_400_000),
}

log = logging.getLogger(__name__)


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
            # A publish of a thousand events goes out as a few record batches rather than dozens:
            # the broker's cost is per batch (a quarter of its CPU for the ledger's relay).
            max_batch_size=256 * 1024,
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

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus used before start()")
        return self._producer

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        producer = self._started()
        try:
            pending = [
                # An empty value goes as null: a tombstone, which compaction deletes the key by.
                await producer.send(self._namespace + m.topic, m.value or None, key=m.key.encode())
                for m in messages
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not accept {len(messages)} message(s): {exc!r}") from exc

    async def subscribe(
        self, topics: Sequence[str], *, group: str, listener: AssignmentListener | None = None
    ) -> KafkaSubscription:
        await self._await_group_coordinator(self._namespace + group)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            group_id=self._namespace + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        consumer.subscribe(
            [self._namespace + t for t in topics],
            listener=None if listener is None else _Rebalances(consumer, self._namespace, listener),
        )
        await consumer.start()
        return KafkaSubscription(consumer, self._namespace)

    async def _await_group_coordinator(self, group_id: str) -> None:
        """Return once Kafka names the group's coordinator (or the wait is over).

        A broker that has just started answers GroupCoordinatorNotAvailable until it has loaded
        `__consumer_offsets`, and aiokafka's consumer logs every such answer as an ERROR: normal
        start-up looked like failure. Asked here first, the consumer's own lookup finds it at once.
        A lasting or non-retriable problem is left to the consumer, which reports it as before.
        """
        client = self._started().client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COORDINATOR_WAIT_S
        while True:
            try:
                await client.coordinator_lookup(CoordinationType.GROUP, group_id)
                return
            except KafkaError as exc:
                if not exc.retriable or loop.time() > deadline:
                    return
                log.debug("waiting for the group coordinator", extra={"group": group_id, "error": repr(exc)})
            await asyncio.sleep(_COORDINATOR_POLL_S)  # Kafka offers nothing to await: poll it

    async def recent(self, topic: str, *, per_partition: int) -> list[Record]:
        try:
            return await self._recent(topic, per_partition=per_partition)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not deliver the tail of {topic}: {exc!r}") from exc

    async def _recent(self, topic: str, *, per_partition: int) -> list[Record]:
        wire_topic = self._namespace + topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers, client_id=self._client_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(wire_topic, p)
                for p in sorted(await self._started().partitions_for(wire_topic))
            ]
            if not partitions:
                return []
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
            reading = KafkaSubscription(consumer, self._namespace)
            records: list[Record] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                records.extend(await reading.fetch(max_records=per_partition, timeout_s=1.0))
            return records
        finally:
            await consumer.stop()

    async def count(self, topic: str) -> int:
        wire_topic = self._namespace + topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers, client_id=self._client_id, enable_auto_commit=False
        )
        try:
            await consumer.start()
            # A topic that does not exist holds nothing: asking the producer for its partitions
            # would wait for it to appear (auto-creation is off), so ask the cluster what exists.
            if wire_topic not in await consumer.topics():
                return 0
            partitions = [
                TopicPartition(wire_topic, p)
                for p in sorted(await self._started().partitions_for(wire_topic))
            ]
            if not partitions:
                return 0
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not report the offsets of {topic}: {exc!r}") from exc
        finally:
            await consumer.stop()
        return sum(ends[tp] - starts[tp] for tp in partitions)

    async def lag(self, groups: Sequence[str]) -> list[PartitionLag]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._servers, client_id=self._client_id)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers, client_id=self._client_id, enable_auto_commit=False
        )
        try:
            await admin.start()
            await consumer.start()
            committed: list[tuple[str, TopicPartition, int]] = []
            for group in groups:
                await self._await_group_coordinator(self._namespace + group)
                offsets = await admin.list_consumer_group_offsets(self._namespace + group)
                committed += [(group, tp, meta.offset) for tp, meta in offsets.items() if meta.offset >= 0]
            ends = await consumer.end_offsets([tp for _, tp, _ in committed]) if committed else {}
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not report consumer offsets: {exc!r}") from exc
        finally:
            await consumer.stop()
            await admin.close()
        strip = len(self._namespace)
        rows = [
            PartitionLag(group, tp.topic[strip:], tp.partition, offset, ends[tp])
            for group, tp, offset in committed
            if tp.topic.startswith(self._namespace)
        ]
        return sorted(rows, key=lambda r: (r.group, r.topic, r.partition))


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's rebalance callbacks, in the bus port's terms (topics without the namespace)."""

    def __init__(self, consumer: AIOKafkaConsumer, namespace: str, listener: AssignmentListener) -> None:
        self._consumer = consumer
        self._strip = len(namespace)
        self._listener = listener

    def _plain(self, partitions: Sequence[TopicPartition]) -> frozenset[tuple[str, int]]:
        return frozenset((tp.topic[self._strip :], tp.partition) for tp in partitions)

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._listener.revoked(self._plain(revoked))

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        counts = {
            topic[self._strip :]: len(self._consumer.partitions_for_topic(topic) or ())
            for topic in self._consumer.subscription()
        }
        self._listener.assigned(self._plain(assigned), counts)


class KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer, namespace: str) -> None:
        self._consumer = consumer
        self._namespace = namespace
        self._strip = len(namespace)

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Record]:
        try:
            batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not deliver records: {exc!r}") from exc
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

    async def lag(self) -> dict[tuple[str, int], int]:
        lags: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)  # from the last fetch response: no round trip
            if end is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:  # revoked meanwhile: its new owner reports it
                continue
            except KafkaError as exc:
                raise BusUnavailable(f"Kafka did not report positions: {exc!r}") from exc
            lags[(tp.topic[self._strip :], tp.partition)] = max(0, end - position)
        return lags

    async def commit(self, records: Sequence[Record]) -> None:
        held = self._consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(self._namespace + record.topic, record.partition)
            if tp in held:
                offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced between fetch and commit: the partitions' new owner starts from
            # the last committed offset and is delivered these records again.
            raise PartitionsRevoked(str(exc)) from exc
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not take the commit: {exc!r}") from exc

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
        missing = [t for t in topics if namespace + t not in existing]
        if missing:
            # Another process may create them meanwhile: the outcome we wanted, so not an error.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            namespace + t,
                            num_partitions=partitions,
                            replication_factor=1,
                            topic_configs=_COMPACTED_CONFIG if t in topic_names.COMPACTED else {},
                        )
                        for t in missing
                    ]
                )
        return [namespace + t for t in missing]
    finally:
        await admin.close()
