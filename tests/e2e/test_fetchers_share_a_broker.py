"""Two `portfolio-sync fetcher --broker sim` processes in one consumer group share the work: every
request is handled exactly once between them, and both take part."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage, Subscription
from shared.credentials import CredentialCipher
from shared.events import HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses
from tests.support.waiting import eventually


@pytest.fixture
async def namespaced_bus(kafka: KafkaService) -> AsyncIterator[tuple[KafkaBus, str]]:
    namespace = f"two-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics(["sim"]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    yield bus, namespace
    await bus.close()


def _requests(count: int) -> list[SyncRequested]:
    return [
        SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL) for _ in range(count)
    ]


async def _collect(snapshots: Subscription, into: list[HoldingSnapshot], until: int, what: str) -> None:
    async def enough() -> bool:
        into.extend(
            decode_event(HoldingSnapshot, r.value)
            for r in await snapshots.fetch(max_records=500, timeout_s=0.5)
        )
        return len(into) >= until

    await eventually(enough, timeout_s=90, what=what)


async def test_two_fetchers_for_one_broker_handle_each_request_exactly_once(
    namespaced_bus: tuple[KafkaBus, str], kafka: KafkaService, tmp_path: Path
) -> None:
    bus, namespace = namespaced_bus
    fetchers = ServiceProcesses(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_NAMESPACE": namespace,
            "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
            "SIMULATED_LATENCY_MS": "20",
            "RAW_ARCHIVE": "none",  # no database here: the archive is tested elsewhere
        },
        tmp_path,
    )
    snapshots = await bus.subscribe([topics.HOLDINGS_SNAPSHOTS], group="observer")
    try:
        fetchers.start("fetcher-a", "fetcher", "--broker", "sim")
        fetchers.start("fetcher-b", "fetcher", "--broker", "sim")

        # Warm up until both have produced: from then on the group is settled (no more rebalances).
        warm: list[HoldingSnapshot] = []
        warm_ids: set[uuid.UUID] = set()

        async def both_working() -> bool:
            fetchers.assert_alive()
            batch = _requests(8)
            warm_ids.update(r.event_id for r in batch)
            await bus.publish([OutgoingMessage.of(topics.sync_requests("sim"), r) for r in batch])
            await _collect(snapshots, warm, len(warm) + 1, "a warm-up snapshot")
            return len({s.fetcher_id for s in warm}) == 2

        await eventually(both_working, timeout_s=90, what="both fetchers to take requests", interval_s=0.2)

        sent = _requests(400)
        await bus.publish([OutgoingMessage.of(topics.sync_requests("sim"), r) for r in sent])
        got: list[HoldingSnapshot] = []
        sent_ids = {r.event_id for r in sent}

        async def all_answered() -> bool:
            fetchers.assert_alive()
            await _collect(snapshots, got, len(got), "snapshots")
            return sent_ids <= {s.request_id for s in got}

        await eventually(all_answered, timeout_s=90, what="a snapshot for each of the 400 requests")
        extra = await snapshots.fetch(max_records=500, timeout_s=2.0)  # anything doubled arrives here
        got.extend(decode_event(HoldingSnapshot, r.value) for r in extra)
    finally:
        await snapshots.close()
        codes = fetchers.stop_all()
        print(fetchers.logs())

    answers = Counter(s.request_id for s in got if s.request_id not in warm_ids)
    assert set(answers) == sent_ids
    assert [rid for rid, n in answers.items() if n > 1] == [], "a request was handled twice"
    share = Counter(s.fetcher_id for s in got if s.request_id in sent_ids)
    assert len(share) == 2 and min(share.values()) > 0, f"one fetcher did all the work: {share}"
    assert codes == {"fetcher-a": 0, "fetcher-b": 0}
