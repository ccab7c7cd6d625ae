"""`portfolio-sync api --workers 2` as a real process: both workers serve the one port, each its own
metrics; SIGTERM stops them all with status 0; a worker that dies takes the others down with it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.credentials import CredentialCipher
from tests.support.processes import ServiceProcesses, free_port
from tests.support.scraping import scrape
from tests.support.waiting import eventually

REQUESTS = "portfolio_sync_api_request_duration_seconds_count"


def _two_free_ports() -> int:
    """A port free together with the next one (worker 1's metrics are on METRICS_PORT + 1)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def _workers_of(parent: int) -> list[int]:
    """The worker processes `parent` spawned (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Api:
    def __init__(self, services: ServiceProcesses, port: int, metrics_port: int) -> None:
        self.services, self.base_url, self.metrics_port = services, f"http://127.0.0.1:{port}", metrics_port

    async def served_by_each(self) -> float:
        """/healthz requests counted by both workers together (each scrape fails if one is down)."""
        scrapes = await asyncio.gather(scrape(self.metrics_port), scrape(self.metrics_port + 1))
        return sum(s.value(REQUESTS, route="/healthz") for s in scrapes)


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    port, metrics_port = free_port(), _two_free_ports()
    services = ServiceProcesses(
        {
            "DATABASE_URL": database_url,
            "BUS": "memory",
            "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
            "API_PORT": str(port),
            "METRICS_PORT": str(metrics_port),
        },
        tmp_path,
    )
    services.start("api", "api", "--workers", "2")
    try:
        yield Api(services, port, metrics_port)
    finally:
        services.stop_all()


async def _both_up(api: Api) -> None:
    async def up() -> bool:
        api.services.assert_alive()
        try:
            await api.served_by_each()
        except httpx.TransportError:
            return False
        return True

    await eventually(up, timeout_s=60, what="both workers serving their metrics")


async def test_two_workers_serve_one_port_and_stop_cleanly_on_sigterm(api: Api) -> None:
    await _both_up(api)
    workers = _workers_of(api.services.pid("api"))
    assert len(workers) == 2
    before = await api.served_by_each()
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
        answers = await asyncio.gather(*(http.get("/healthz") for _ in range(40)))
    assert {a.status_code for a in answers} == {200}
    assert await api.served_by_each() - before == 40

    assert api.services.stop("api", timeout_s=40) == 0
    assert not [pid for pid in workers if _alive(pid)]


async def test_a_worker_that_dies_stops_the_others_and_the_api_fails(api: Api) -> None:
    await _both_up(api)
    killed, other = _workers_of(api.services.pid("api"))
    os.kill(killed, signal.SIGKILL)

    async def parent_ended() -> bool:
        return api.services.returncode("api") is not None

    await eventually(parent_ended, timeout_s=40, what="the parent to exit")
    assert api.services.returncode("api") == 1
    assert not _alive(other)
