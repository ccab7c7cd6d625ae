"""Kafka as a three-broker cluster: topics get three replicas with two in sync, and a broker killed
(`kill -9`) under steady load loses no event and writes none twice.

The load goes through the project's own KafkaBus (idempotent producer, acks=all) in batches, as the
ledger's outbox relay publishes, while a consumer group reads and commits as the services do.
Midway, the broker leading partition 0 is killed; once every event is in, it is started again and
must rejoin every partition's in-sync replicas.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import topics
from shared.bus.kafka import KafkaBus, KafkaSubscription, create_topics
from shared.bus.port import BusUnavailable, OutgoingMessage, PartitionsRevoked
from shared.bus.replication import ReplicationUnsatisfiable
from tests.support.kafka_cluster import KafkaCluster
from tests.support.waiting import eventually

TOPIC = topics.HOLDINGS_CHANGES
PARTITIONS = 4
EVENTS = 3000
BATCH = 25  # events per publish
BATCH_INTERVAL_S = 0.04  # ~600 events/s while nothing stalls: some 5 s of load
KEYS = 60  # accounts: per-key order is checked too
KILL_AFTER = EVENTS // 3


def _namespace() -> str:
    return f"cluster-{uuid.uuid4().hex[:8]}."


async def _partitions(servers: list[str], wire_topic: str) -> list[dict[str, Any]]:
    """The topic's partitions as the cluster describes them, once a broker's metadata holds them (a
    new topic reaches each broker's metadata a moment after its creation returns)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()

    async def described() -> list[dict[str, Any]]:
        [topic] = await admin.describe_topics([wire_topic])
        return (
            sorted(topic["partitions"], key=lambda p: int(p["partition"])) if topic["error_code"] == 0 else []
        )

    try:
        return await eventually(described, timeout_s=30, what=f"{wire_topic} in the cluster's metadata")
    finally:
        await admin.close()


async def _topic_config(servers: list[str], wire_topic: str, name: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, wire_topic, {name: None})]
        )
    finally:
        await admin.close()
    [resource] = response.to_object()["resources"]
    [entry] = resource["config_entries"]
    return str(entry["config_value"])


async def test_topics_get_three_replicas_and_two_in_sync_by_default(kafka_cluster: KafkaCluster) -> None:
    namespace = _namespace()
    await create_topics(kafka_cluster.servers, [TOPIC], partitions=PARTITIONS, namespace=namespace)

    partitions = await _partitions(kafka_cluster.servers, namespace + TOPIC)
    assert [len(p["replicas"]) for p in partitions] == [3] * PARTITIONS
    assert await _topic_config(kafka_cluster.servers, namespace + TOPIC, "min.insync.replicas") == "2"


async def test_explicit_replication_is_used_and_too_much_is_refused(kafka_cluster: KafkaCluster) -> None:
    namespace = _namespace()
    await create_topics(
        kafka_cluster.servers,
        [TOPIC],
        partitions=1,
        namespace=namespace,
        replication_factor=2,
        min_insync_replicas=1,
    )
    [partition] = await _partitions(kafka_cluster.servers, namespace + TOPIC)
    assert len(partition["replicas"]) == 2
    assert await _topic_config(kafka_cluster.servers, namespace + TOPIC, "min.insync.replicas") == "1"

    with pytest.raises(
        ReplicationUnsatisfiable, match="KAFKA_REPLICATION_FACTOR=4 but the Kafka cluster has 3"
    ):
        await create_topics(
            kafka_cluster.servers,
            [topics.SYNC_FAILURES],
            partitions=1,
            namespace=namespace,
            replication_factor=4,
        )


async def _consume(
    subscription: KafkaSubscription, deliveries: list[dict[str, Any]], stop: asyncio.Event
) -> int:
    """Read and commit as a service does; return how many commits failed (a rebalance or a
    coordinator that moved: those records come again, which is at-least-once, not loss)."""
    failed_commits = 0
    while not stop.is_set():
        try:
            records = await subscription.fetch(max_records=500, timeout_s=0.5)
        except BusUnavailable:
            continue
        deliveries.extend(
            json.loads(r.value) | {"partition": r.partition, "offset": r.offset} for r in records
        )
        try:
            await subscription.commit(records)
        except (BusUnavailable, PartitionsRevoked):
            failed_commits += 1
    return failed_commits


async def test_a_broker_killed_under_load_loses_nothing_and_doubles_nothing(
    kafka_cluster: KafkaCluster,
) -> None:
    servers = kafka_cluster.servers
    namespace = _namespace()
    wire_topic = namespace + TOPIC
    await create_topics(servers, [TOPIC], partitions=PARTITIONS, namespace=namespace)
    bus = KafkaBus(servers, client_id="cluster-test", namespace=namespace)
    await bus.start()
    subscription = await bus.subscribe([TOPIC], group="cluster-test")
    deliveries: list[dict[str, Any]] = []
    stop = asyncio.Event()
    consumer = asyncio.create_task(_consume(subscription, deliveries, stop))
    sent: list[str] = []
    killed = 0
    publish_retries = 0
    slowest_publish_s = 0.0
    started = time.monotonic()
    try:
        for first in range(0, EVENTS, BATCH):
            if killed == 0 and first >= KILL_AFTER:
                killed = int((await _partitions(servers, wire_topic))[0]["leader"])
                kafka_cluster.kill(killed)
            batch = [(str(uuid.uuid4()), seq) for seq in range(first, first + BATCH)]
            messages = [
                OutgoingMessage(
                    TOPIC, f"account-{seq % KEYS}", json.dumps({"event_id": event_id, "seq": seq}).encode()
                )
                for event_id, seq in batch
            ]
            t0 = time.monotonic()
            while True:
                try:
                    await bus.publish(messages)
                    break
                except BusUnavailable:  # as the outbox relay does: the same events again
                    publish_retries += 1
            slowest_publish_s = max(slowest_publish_s, time.monotonic() - t0)
            sent += [event_id for event_id, _ in batch]
            await asyncio.sleep(BATCH_INTERVAL_S)  # the load's pace, not a wait for an outcome
        published_s = time.monotonic() - started

        await eventually(
            lambda: _all_in(deliveries, sent),
            timeout_s=60,
            what="every event delivered to the consumer group",
        )
        stop.set()
        failed_commits = await consumer
        log = await bus.recent(TOPIC, per_partition=EVENTS)
    finally:
        stop.set()
        await subscription.close()
        await bus.close()

    in_log = Counter(json.loads(r.value)["event_id"] for r in log)
    delivered = Counter(d["event_id"] for d in deliveries)
    print(
        f"\n{EVENTS} events in {published_s:.1f} s, node {killed} killed after {KILL_AFTER}; slowest publish "
        f"{slowest_publish_s:.1f} s, {publish_retries} publish retries, {failed_commits} failed commits, "
        f"{sum(delivered.values()) - len(delivered)} redelivered"
    )
    assert killed, "no broker was killed"
    assert len(sent) == len(set(sent)) == EVENTS
    assert set(in_log) == set(sent), f"lost: {len(set(sent) - set(in_log))}"
    assert [e for e, n in in_log.items() if n > 1] == [], "events written twice"
    assert set(delivered) == set(sent)
    # Without a failed commit the group reads each event once; with one, that batch comes again.
    assert failed_commits or sum(delivered.values()) == EVENTS, "events delivered twice"
    assert _out_of_order([json.loads(r.value) for r in log]) == [], "an account's events out of order"

    # The killed broker comes back on its data and catches up: every partition has three in sync again.
    kafka_cluster.start_node(killed)

    async def whole() -> bool:
        return all(len(p["isr"]) == 3 for p in await _partitions(servers, wire_topic))

    await eventually(whole, timeout_s=60, what=f"node {killed} back in every partition's ISR", interval_s=0.5)


async def _all_in(deliveries: list[dict[str, Any]], sent: list[str]) -> bool:
    return {d["event_id"] for d in deliveries} >= set(sent)


def _out_of_order(events: list[dict[str, Any]]) -> list[int]:
    """Sequence numbers that come after a higher one of the same account (the log is read partition
    by partition, in offset order, and an account's events share a partition)."""
    last: dict[int, int] = defaultdict(lambda: -1)
    wrong = []
    for event in events:
        key = int(event["seq"]) % KEYS
        if int(event["seq"]) < last[key]:
            wrong.append(int(event["seq"]))
        last[key] = max(last[key], int(event["seq"]))
    return wrong
