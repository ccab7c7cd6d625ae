"""Kafka adapter of the bus port, on aiokafka.

The producer is idempotent with acks=all, so `publish` returns only when every replica in sync has
the messages. Consumers never auto-commit: services commit after their effect is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import CoordinationType
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError

from shared import topics as topic_names
from shared.bus.partitioner import partition
from shared.bus.port import (
    AssignmentListener,
    BusUnavailable,
    OutgoingMessage,
    PartitionLag,
    PartitionsRevoked,
    Record,
)
from shared.bus.replication import Replication, topic_replication

# What one fetch may bring per partition. aiokafka's default (1 MiB) holds some 250 snapshots of
# twenty holdings, which capped the ledger's batches at a thousand events on four partitions, half
# what it asks for; each partition's next fetch is sent only once its records are taken. Twice that
# fills them; more is only memory: aiokafka keeps a partition's whole answer until every record of
# it is taken, and copies it on the way in (4 MiB put the ledger's peak 10-15 MB higher).
MAX_PARTITION_FETCH_BYTES = 2 * 1024 * 1024
# A member that does not fetch again within this long leaves its group and its batch is delivered again
# (aiokafka's default, spelled out): nothing may hold a batch that long. The fetcher's inline wait for a
# retry's not_before is bounded far below it (Settings.fetcher_max_inline_wait_seconds, at most 60 s).
MAX_POLL_INTERVAL_MS = 300_000
# How long `KafkaSubscription.fetch` waits for the answer to the fetch that taking held records sent:
# a round trip to a broker with records to give, the whole wait for one without.
_TOP_UP_WAIT_MS = 10
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

# Where `_read_to_end` starts in each partition, given the partitions and their ends.
_StartAt = Callable[
    [AIOKafkaConsumer, list[TopicPartition], dict[TopicPartition, int]], Awaitable[dict[TopicPartition, int]]
]
_READ_BATCH = 1000  # records per fetch when reading a partition to its end
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(message: OutgoingMessage) -> int | None:
    """The record's Kafka timestamp; None: the producer's clock when it is sent."""
    return None if message.timestamp is None else _epoch_ms(message.timestamp)


def _epoch_ms(moment: datetime) -> int:
    """Kafka's timestamp of `moment`, exactly (a float's rounding could put a record a millisecond
    after the time it is looked up by)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


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
            # Nothing waits to be batched with later sends: `publish` hands over all its messages
            # before the sender runs, so they go together anyway, and every hop of a sync (request,
            # snapshot, change) would otherwise wait out the linger.
            linger_ms=0,
            # A publish of a thousand events goes out as a few record batches rather than dozens:
            # the broker's cost is per batch (a quarter of its CPU for the ledger's relay).
            max_batch_size=256 * 1024,
            partitioner=partition,
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
        """Send every message and wait for each one's answer, even once one of them has failed: when
        this raises, nothing it sent is still on its way to land later (a caller that then looks on
        the topic for what got through, as the outbox relay does, sees all of it).

        One message goes by `send`, joining whatever batch its partition has pending (concurrent
        publishers' single events share a request). Several go in record batches of their own, one
        per partition at a time, in order: per message, `send` costs a future, a coroutine and the
        callbacks that answer them, which was most of the outbox relay's CPU."""
        producer = self._started()
        pending: list[asyncio.Future[Any]] = []
        failure: KafkaError | None = None
        try:
            if len(messages) == 1:
                [m] = messages
                # An empty value goes as null: a tombstone, which compaction deletes the key by.
                pending.append(
                    await producer.send(
                        self._namespace + m.topic, m.value or None, key=m.key.encode(), timestamp_ms=_ms(m)
                    )
                )
            else:
                await self._send_batches(producer, messages, pending)
        except KafkaError as exc:
            failure = exc
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if failure is None and isinstance(outcome, BaseException):
                if not isinstance(outcome, KafkaError):
                    raise outcome
                failure = outcome
        if failure is not None:
            raise BusUnavailable(f"Kafka did not accept {len(messages)} message(s): {failure!r}") from failure

    async def _send_batches(
        self, producer: AIOKafkaProducer, messages: Sequence[OutgoingMessage], sent: list[asyncio.Future[Any]]
    ) -> None:
        """Hand `messages` to the producer as record batches, each partition's in publish order and
        on the partition `send` would choose (`shared.bus.partitioner`); add each batch's answer to
        `sent` as it goes. A publisher's messages often share a timestamp (the outbox's rows of one
        batch): each distinct one is turned into Kafka's milliseconds once."""
        by_partition: dict[tuple[str, int], list[tuple[bytes, bytes | None, int | None]]] = {}
        partitions: dict[str, tuple[str, list[int]]] = {}
        stamps: dict[int, int] = {}  # id() of a timestamp -> its milliseconds, while `messages` hold them
        for topic, key, value, timestamp in messages:
            if topic not in partitions:
                every = sorted(await producer.partitions_for(self._namespace + topic))
                partitions[topic] = (self._namespace + topic, every)
            full_topic, every = partitions[topic]
            ms = None
            if timestamp is not None:
                ms = stamps.get(id(timestamp))
                if ms is None:
                    ms = stamps[id(timestamp)] = _epoch_ms(timestamp)
            encoded = key.encode()
            by_partition.setdefault((full_topic, partition(encoded, every, every)), []).append(
                (encoded, value or None, ms)
            )
        for (topic, number), records in by_partition.items():
            batch = producer.create_batch()
            for record_key, record_value, ms in records:
                if batch.append(key=record_key, value=record_value, timestamp=ms) is None:
                    # Full: send it, and start the next with this record (an empty batch takes any).
                    sent.append(await producer.send_batch(batch, topic, partition=number))
                    batch = producer.create_batch()
                    batch.append(key=record_key, value=record_value, timestamp=ms)
            sent.append(await producer.send_batch(batch, topic, partition=number))

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
        async def last_ones(
            consumer: AIOKafkaConsumer, partitions: list[TopicPartition], ends: dict[TopicPartition, int]
        ) -> dict[TopicPartition, int]:
            starts = await consumer.beginning_offsets(partitions)
            return {tp: max(starts[tp], ends[tp] - per_partition) for tp in partitions}

        return [record async for chunk in self._read_to_end(topic, last_ones) for record in chunk]

    async def published_since(self, topic: str, since: datetime) -> AsyncGenerator[list[Record], None]:
        since_ms = _epoch_ms(since)

        async def first_at_or_after(
            consumer: AIOKafkaConsumer, partitions: list[TopicPartition], ends: dict[TopicPartition, int]
        ) -> dict[TopicPartition, int]:
            # The first record batch whose newest timestamp is `since` or later: no record at or
            # after `since` comes before it, whatever order the timestamps came in.
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            return {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in partitions}

        try:
            async for chunk in self._read_to_end(topic, first_at_or_after):
                yield chunk
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not deliver {topic} since {since}: {exc!r}") from exc

    async def _read_to_end(self, topic: str, start_at: _StartAt) -> AsyncGenerator[list[Record], None]:
        """Read each partition of `topic` from where `start_at` says to the end it has now, a fetch
        at a time (what is read need not fit in memory at once)."""
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
                return
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            for tp, offset in (await start_at(consumer, partitions, ends)).items():
                consumer.seek(tp, offset)
            reading = KafkaSubscription(consumer, self._namespace)
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                records = await reading.fetch(max_records=_READ_BATCH, timeout_s=1.0)
                # A partition's last fetch may bring records beyond the end it had when we started.
                yield [r for r in records if r.offset < ends[TopicPartition(wire_topic, r.partition)]]
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
        """What aiokafka holds, topped up with what reached Kafka since; if it holds nothing, the
        first records to arrive within `timeout_s`.

        aiokafka fetches a partition again only once the records it holds of it are taken, so what
        it holds came in on the fetch that followed the last `fetch`: for a consumer that fetches
        once per batch, records that waited out a whole batch. Taking them sends that next fetch;
        waiting a moment for its answer brings in what reached Kafka since, which would otherwise
        wait out another batch."""
        try:
            batches = await self._consumer.getmany(timeout_ms=0, max_records=max_records)
            held = sum(map(len, batches.values()))
            if not held:
                batches = await self._consumer.getmany(
                    timeout_ms=int(timeout_s * 1000), max_records=max_records
                )
            elif held < max_records:
                since = await self._consumer.getmany(
                    timeout_ms=_TOP_UP_WAIT_MS, max_records=max_records - held
                )
                for tp, messages in since.items():
                    batches[tp] = batches.get(tp, []) + messages
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not deliver records: {exc!r}") from exc
        return [
            Record(
                m.topic[self._strip :],
                m.partition,
                m.offset,
                m.key.decode() if m.key is not None else None,
                m.value or b"",
                m.timestamp / 1000 if m.timestamp is not None and m.timestamp >= 0 else None,
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
    bootstrap_servers: Sequence[str],
    topics: Sequence[str],
    *,
    partitions: int,
    namespace: str = "",
    replication_factor: int = 0,
    min_insync_replicas: int = 0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created (with the namespace).

    `replication_factor` / `min_insync_replicas` of 0 are derived from the brokers that answer
    (shared/bus/replication.py); either one beyond what the cluster can hold raises
    `ReplicationUnsatisfiable` before anything is created.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=list(bootstrap_servers))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if namespace + t not in existing]
        if missing:
            brokers = len((await admin.describe_cluster())["brokers"])
            replication = topic_replication(
                brokers, factor=replication_factor, min_insync=min_insync_replicas
            )
            # Another process may create them meanwhile: the outcome we wanted, so not an error.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            namespace + t,
                            num_partitions=partitions,
                            replication_factor=replication.factor,
                            topic_configs=_topic_config(t, replication),
                        )
                        for t in missing
                    ]
                )
        return [namespace + t for t in missing]
    finally:
        await admin.close()


def _topic_config(topic: str, replication: Replication) -> dict[str, str]:
    config = {"min.insync.replicas": str(replication.min_insync)}
    # A replica that was out of sync never becomes leader: with acks=all, what was acknowledged stays.
    config["unclean.leader.election.enable"] = "false"
    config.update(retention_config(topic))
    return config


def retention_config(topic: str) -> dict[str, str]:
    """How long Kafka keeps a topic's messages: each key's latest on a compacted topic, else the
    cluster's `log.retention.*` (nothing set here). The AsyncAPI document shows it to subscribers."""
    return dict(_COMPACTED_CONFIG) if topic in topic_names.COMPACTED else {}
