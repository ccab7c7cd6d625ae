"""A Kafka and a Postgres of the chaos tests' own, for the faults that stop them: stopping the
session's shared ones would fail every other test. Started on first use, once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.faults import LocalServer
from tests.support import infra


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[LocalServer]:
    _, workdir, port = infra._start_local(infra.KAFKA_LOCAL, also_next=True, prefix="kafka-chaos-")
    try:
        yield LocalServer(str(infra.KAFKA_LOCAL), workdir, port)
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
