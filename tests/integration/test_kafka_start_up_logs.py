"""A consumer joining its group on a Kafka that has just started logs no ERROR.

A new broker answers FindCoordinator with GroupCoordinatorNotAvailable until it has loaded
__consumer_offsets; aiokafka logs each such answer as an ERROR, which made every `make up` look like
a failure. The bus waits for the coordinator quietly instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest

from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage
from tests.support.infra import KafkaService, provide_kafka


@pytest.fixture
def fresh_kafka() -> Iterator[KafkaService]:
    service = provide_kafka(fresh=True)
    try:
        yield service
    finally:
        service.stop()


async def test_joining_a_group_on_a_fresh_kafka_logs_no_error(
    fresh_kafka: KafkaService, caplog: pytest.LogCaptureFixture
) -> None:
    servers = fresh_kafka.bootstrap_servers.split(",")
    topic = f"fresh.{uuid.uuid4().hex[:8]}"
    await create_topics(servers, [topic], partitions=1)
    bus = KafkaBus(servers)
    with caplog.at_level(logging.DEBUG, logger="aiokafka"):
        await bus.start()
        try:
            subscription = await bus.subscribe([topic], group="fresh-group")
            await bus.publish([OutgoingMessage(topic, "k", b"v")])
            records = []
            async with asyncio.timeout(60):
                while not records:
                    records = await subscription.fetch(max_records=1, timeout_s=1.0)
            await subscription.commit(records)
            await subscription.close()
        finally:
            await bus.close()

    assert [r.value for r in records] == [b"v"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
