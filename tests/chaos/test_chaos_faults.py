"""Real processes, real Kafka and Postgres, steady "sync now" load and one fault at a time: nothing is
lost, doubled, announced twice or out of order, and every account ends as the broker last said.

`CHAOS_LEVEL=long` (`make chaos`) runs every fault with more accounts and load; the short form (the
default, part of `make test`) runs the faults marked short. Each run's row goes to $CHAOS_REPORT.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.chaos.faults import FAULTS, Fault, FaultContext
from tests.chaos.local_servers import LocalServer
from tests.chaos.run import LEVELS, level_name, run_fault
from tests.chaos.stack import running_stack
from tests.support.databases import DatabaseCloner


def _faults() -> list[Fault]:
    return FAULTS if level_name() == "long" else [f for f in FAULTS if f.short]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("fault", _faults(), ids=lambda f: f.key)
async def test_nothing_is_lost_or_doubled_under(
    fault: Fault, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    own_kafka: LocalServer | None = request.getfixturevalue("own_kafka") if fault.own_kafka else None
    own_postgres: LocalServer | None = None
    if own_kafka is None:
        bootstrap = request.getfixturevalue("kafka").bootstrap_servers
    else:
        bootstrap = f"127.0.0.1:{own_kafka.port}"
    if fault.own_postgres:
        own_postgres, url = request.getfixturevalue("own_postgres")
        cloner = DatabaseCloner(url)
    else:
        cloner = request.getfixturevalue("cloner")
    database_url = await cloner.fresh()
    try:
        async with running_stack(
            database_url=database_url,
            bootstrap_servers=bootstrap,
            topology=fault.topology,
            accounts=LEVELS[level_name()].accounts,
            log_dir=tmp_path,
            env=fault.env,
        ) as stack:
            async with contextlib.AsyncExitStack() as resources:
                context = FaultContext(stack, own_kafka, own_postgres, resources)
                result = await run_fault(stack, fault, context)
            if result.failures():
                print(stack.services.logs(tail_lines=60))
    finally:
        await cloner.drop(database_url)
    result.record()
    print(result)
    assert not result.failures(), f"{fault.name}: {result.failures()} ({result})"
