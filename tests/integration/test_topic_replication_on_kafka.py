"""On one Kafka node, `topics create` makes topics with one replica, one in sync, and refuses a
replication factor the node cannot hold with one line naming the setting."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.cli import main
from shared import topics
from tests.support.infra import KafkaService


async def _replication(servers: str, wire_topic: str) -> tuple[list[int], str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([wire_topic])
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, wire_topic, {"min.insync.replicas": None})]
        )
    finally:
        await admin.close()
    [entry] = response.to_object()["resources"][0]["config_entries"]
    return [len(p["replicas"]) for p in described["partitions"]], str(entry["config_value"])


def _environment(monkeypatch: pytest.MonkeyPatch, kafka: KafkaService, namespace: str) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("KAFKA_NAMESPACE", namespace)
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "2")
    for name in ("KAFKA_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)


def test_topics_create_on_one_node_makes_one_replica_one_in_sync(
    kafka: KafkaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"rf-{uuid.uuid4().hex[:8]}."
    _environment(monkeypatch, kafka, namespace)

    assert main(["topics", "create", "--brokers", "sim"]) == 0

    replicas, min_insync = asyncio.run(
        _replication(kafka.bootstrap_servers, namespace + topics.HOLDINGS_CHANGES)
    )
    assert (replicas, min_insync) == ([1, 1], "1")


def test_topics_create_refuses_more_replicas_than_brokers_in_one_line(
    kafka: KafkaService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = f"rf-{uuid.uuid4().hex[:8]}."
    _environment(monkeypatch, kafka, namespace)
    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", "3")

    assert main(["topics", "create", "--brokers", "sim"]) == 1

    assert capsys.readouterr().err == (
        "portfolio-sync topics: KAFKA_REPLICATION_FACTOR=3 but the Kafka cluster has 1 broker(s): "
        "set it to 1 or less, or 0 to derive it from the cluster\n"
    )
