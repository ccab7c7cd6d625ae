"""A service's metrics scraped over HTTP, as Prometheus does: a fetcher syncs an account, and its
metrics server shows that sync."""

from __future__ import annotations

import asyncio
import socket
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from services.fetcher.main import consumer_group, run_fetcher
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.events import SyncRequested, SyncTrigger
from shared.metrics import metrics_served, metrics_server
from shared.settings import Settings
from tests.support.waiting import eventually


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_metrics_port_zero_serves_nothing() -> None:
    with metrics_served(Settings(metrics_port=0)) as port:
        assert port is None


async def test_a_fetchers_metrics_server_shows_the_sync_it_just_did() -> None:
    settings = Settings(
        bus="memory",
        credentials_keys=SecretStr(CredentialCipher.generate_key()),
        simulated_latency_ms=0,
        metrics_port=_free_port(),
        raw_archive="none",
    )
    bus = InMemoryBus()
    account_id = uuid.uuid4()
    stop = asyncio.Event()
    with metrics_served(settings) as port:
        assert port == settings.metrics_port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
            before = _samples((await scraper.get("/metrics")).text, "portfolio_sync_fetcher_syncs_total")
            fetcher = asyncio.create_task(run_fetcher(settings, "sim", bus, stop))
            request = SyncRequested(account_id=account_id, broker="sim", trigger=SyncTrigger.MANUAL)
            await bus.publish([OutgoingMessage.of(topics.sync_requests("sim"), request)])

            async def snapshot_published() -> bool:
                return len(bus.records(topics.HOLDINGS_SNAPSHOTS)) == 1

            await eventually(snapshot_published, timeout_s=10, what="the fetcher's snapshot")
            stop.set()
            await fetcher
            response = await scraper.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    succeeded = frozenset({("broker", "sim"), ("outcome", "succeeded")})
    after = _samples(response.text, "portfolio_sync_fetcher_syncs_total")
    assert after[succeeded] - before.get(succeeded, 0.0) == 1
    consumed = _samples(response.text, "portfolio_sync_consumed_records_total")
    assert consumed[frozenset({("group", consumer_group("sim"))})] >= 1
    assert str(account_id) not in response.text, "no label names an account"


async def test_the_server_picks_a_free_port_and_lets_it_go() -> None:
    with metrics_server("127.0.0.1", 0) as port:
        async with httpx.AsyncClient() as scraper:
            assert (await scraper.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
        again.bind(("127.0.0.1", port))  # no listener left: a restarted service can take it again
        again.listen()
