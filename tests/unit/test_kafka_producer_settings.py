"""KafkaBus's producer waits for every in-sync replica and is idempotent: what a broker's failover
relies on to lose no message (acks=all with min.insync.replicas) and write none twice (the broker
drops a retried batch it already has)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.bus import kafka


class _RecordingProducer:
    made: list[dict[str, Any]] = []

    def __init__(self, **config: Any) -> None:
        self.made.append(config)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_the_producer_is_idempotent_and_waits_for_every_in_sync_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "AIOKafkaProducer", _RecordingProducer)
    bus = kafka.KafkaBus(["127.0.0.1:1"])
    await bus.start()
    await bus.close()

    [config] = _RecordingProducer.made
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
