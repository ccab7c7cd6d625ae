"""A Kafka and a Postgres of the chaos tests' own, for the faults that stop them or put a proxy in
front of them: stopping the session's shared ones would fail every other test. Started on first use,
once per module."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from tests.chaos.local_servers import LocalServer
from tests.support import infra
from tests.support.processes import free_port


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[LocalServer]:
    """With a second listener for clients that connect through a proxy (see `TcpProxy`)."""
    workdir = tempfile.mkdtemp(prefix="kafka-chaos-")
    try:
        for attempt in (1, 2):  # ports are picked, then bound: another process may win the race
            listener, proxy = free_port(), free_port()
            server = LocalServer(
                str(infra.KAFKA_LOCAL),
                workdir,
                infra._free_port(also_next=True),
                start_args=("--extra-listener", f"{listener}:{proxy}"),
                proxied_port=proxy,
                proxied_target=listener,
            )
            started = infra._run_local(infra.KAFKA_LOCAL, server.port, workdir, *server.start_args)
            if started.returncode == 0:
                break
            assert attempt == 1, f"kafka-local did not start:\n{started.stderr}\n{started.stdout}"
        yield server
    finally:
        infra._stop_local(infra.KAFKA_LOCAL, workdir)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[tuple[LocalServer, str]]:
    """The server, and its DATABASE_URL."""
    out, workdir, port = infra._start_local(infra.PG_LOCAL, also_next=False, prefix="pg-chaos-")
    url = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("DATABASE_URL="))
    try:
        yield LocalServer(str(infra.PG_LOCAL), workdir, port), infra._asyncpg_url(url)
    finally:
        infra._stop_local(infra.PG_LOCAL, workdir)
