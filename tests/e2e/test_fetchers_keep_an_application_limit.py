"""Two `portfolio-sync fetcher --broker zerodha` processes against a fake Kite that enforces its
documented 10 requests per second per API key: together they keep under it (no 429 at all), each
taking the part of it that its partitions of the request topics allow."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.fetcher.testing import serve_fake
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.events import HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from tests.fakes.rate_windows import most_in_any_window
from tests.fakes.zerodha import ACCESS_TOKEN, API_KEY, RATE_LIMIT_PER_S, ZerodhaFake
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses
from tests.support.waiting import eventually

BROKER = "zerodha"


@pytest.fixture
async def namespaced_bus(kafka: KafkaService) -> AsyncIterator[tuple[KafkaBus, str]]:
    namespace = f"kite-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics([BROKER]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    yield bus, namespace
    await bus.close()


async def test_two_fetchers_of_one_api_key_never_pass_its_limit_together(
    namespaced_bus: tuple[KafkaBus, str], kafka: KafkaService, tmp_path: Path
) -> None:
    bus, namespace = namespaced_bus
    key = CredentialCipher.generate_key()
    sealed = CredentialCipher(key).encrypt({"api_key": API_KEY, "access_token": ACCESS_TOKEN})
    fake = ZerodhaFake()

    def requests(count: int) -> list[SyncRequested]:
        return [
            SyncRequested(
                account_id=uuid.uuid4(),
                broker=BROKER,
                trigger=SyncTrigger.MANUAL,
                credentials_ciphertext=sealed,
            )
            for _ in range(count)
        ]

    async with serve_fake(fake) as base_url:
        fetchers = ServiceProcesses(
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "KAFKA_NAMESPACE": namespace,
                "CREDENTIALS_KEYS": key,
                "BROKER_BASE_URLS": json.dumps({BROKER: base_url}),
                "RAW_ARCHIVE": "none",  # no database here: the archive is tested elsewhere
            },
            tmp_path,
        )
        snapshots = await bus.subscribe([topics.HOLDINGS_SNAPSHOTS], group="observer")
        got: list[HoldingSnapshot] = []

        async def collect() -> None:
            fetchers.assert_alive()
            records = await snapshots.fetch(max_records=500, timeout_s=0.3)
            got.extend(decode_event(HoldingSnapshot, r.value) for r in records)

        try:
            fetchers.start("fetcher-a", "fetcher", "--broker", BROKER)
            fetchers.start("fetcher-b", "fetcher", "--broker", BROKER)

            # Until both have fetched: from then on both hold partitions, and so parts of the limit.
            # A few requests at a time, the next ones once these are answered: no queue builds up.
            warm_up: set[uuid.UUID] = set()

            async def both_working() -> bool:
                await collect()
                if warm_up <= {s.request_id for s in got}:
                    batch = requests(4)
                    warm_up.update(r.event_id for r in batch)
                    await bus.publish([OutgoingMessage.of(topics.sync_requests(BROKER), r) for r in batch])
                return len({s.fetcher_id for s in got}) == 2

            await eventually(both_working, timeout_s=60, what="both fetchers to fetch", interval_s=0.5)

            # Three seconds' worth of the limit at once.
            burst = requests(3 * RATE_LIMIT_PER_S)
            await bus.publish([OutgoingMessage.of(topics.sync_requests(BROKER), r) for r in burst])
            wanted = {r.event_id for r in burst}

            async def all_fetched() -> bool:
                await collect()
                return wanted <= {s.request_id for s in got}

            await eventually(all_fetched, timeout_s=60, what="a snapshot for every request")
        finally:
            await snapshots.close()
            codes = fetchers.stop_all()
            print(fetchers.logs())

    assert fake.rate_limit.rejected == 0, "the fake Kite answered 429"
    busiest = most_in_any_window(fake.rate_limit.arrivals)
    assert busiest <= RATE_LIMIT_PER_S, f"{busiest} requests reached Kite within one second"
    assert len({s.fetcher_id for s in got if s.request_id in wanted}) == 2, "both fetchers sent"
    assert codes == {"fetcher-a": 0, "fetcher-b": 0}
