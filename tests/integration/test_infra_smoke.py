"""Proves the provisioned Kafka and PostgreSQL really work with the clients the services use."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg  # type: ignore[import-untyped]  # no stubs; not in pyproject's mypy overrides
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.support.infra import KafkaService, PostgresService

MESSAGES = 20


@pytest.mark.asyncio
async def test_kafka_idempotent_produce_then_group_consume(kafka: KafkaService) -> None:
    topic = f"infra-smoke-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    # Idempotence makes the broker hand out a producer id (InitProducerId): the call that
    # Kafka-compatible imitations and old protocol versions get wrong.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = [f"v{i}".encode() for i in range(MESSAGES)]
        for i, value in enumerate(sent):
            await producer.send_and_wait(topic, key=f"k{i % 5}".encode(), value=value)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"infra-smoke-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(60):
            while len(received) < MESSAGES:
                batches = await consumer.getmany(timeout_ms=500)
                received += [m.value for msgs in batches.values() for m in msgs]
        await consumer.commit()
        committed = [
            await consumer.committed(TopicPartition(topic, p)) or 0
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
    finally:
        await consumer.stop()

    assert sorted(received) == sorted(sent)
    assert sum(committed) == MESSAGES  # the group coordinator stored our offsets


@pytest.mark.asyncio
async def test_kafka_does_not_auto_create_topics(kafka: KafkaService) -> None:
    # Off, as in production: a typo or an unknown broker code must not make a topic appear.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        node = (await admin.describe_cluster())["brokers"][0]["node_id"]
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(node))])
    finally:
        await admin.close()
    configs = {c[0]: c[1] for resource in response.resources for c in resource[4]}
    assert configs["auto.create.topics.enable"] == "false"


@pytest.mark.asyncio
async def test_postgres_select_1(postgres: PostgresService) -> None:
    assert postgres.url.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(postgres.dsn, timeout=15)
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()
