"""Round trips to Postgres and CPU per small ledger batch: what a ledger that keeps up pays per batch.

    .venv/bin/python bench/ledger_round_trips.py [--batch 15] [--batches 60]

The ledger runs in this process (the in-memory bus stands in for Kafka) on a real Postgres and
applies `--batches` batches of `--batch` first syncs of the simulated broker, each prepared, written
and relayed on its own (`Ledger.apply_batch`). Counted on asyncpg's connection: every message
exchange that waits for Postgres's answer (a statement, BEGIN, COMMIT, a prepare, each COPY's two).
Timed: this process's CPU and Postgres's (its server processes, from /proc), per 1,000 snapshots.
Deterministic where bench-latency is not: its figures hardly move with how busy the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg.connection
import asyncpg.prepared_stmt
from bench_accounts import create_accounts, fresh_database
from machine import local_server_pid, machine_probe, run_facts, with_children_cpu_seconds

from infra import provide_postgres
from services.fetcher.adapter import AccountContext
from services.fetcher.brokers.simulated import simulated_holdings
from services.ledger.handlers import Ledger
from shared.bus.memory import InMemoryBus
from shared.db.engine import create_engine, session_factory
from shared.events import HoldingSnapshot, utc_now

# asyncpg's calls that each wait for Postgres once (a COPY twice: for COPY's answer, then the data's).
_ROUND_TRIPS = {
    asyncpg.connection.Connection: {"_execute": 1, "executemany": 1, "_copy_in": 2, "prepare": 1},
    asyncpg.prepared_stmt.PreparedStatement: {"fetch": 1, "fetchrow": 1, "fetchval": 1, "executemany": 1},
}


@contextmanager
def counting_round_trips() -> Iterator[Counter[str]]:
    """Count round trips by asyncpg call while inside; `execute` without arguments is one (with
    them it goes through `_execute`, counted there)."""
    counts: Counter[str] = Counter()
    originals: list[tuple[type, str, Any]] = []

    def counted(name: str, trips: int, call: Callable[..., Coroutine[Any, Any, Any]]) -> Any:
        @functools.wraps(call)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name] += trips
            return await call(self, *args, **kwargs)

        return wrapper

    def execute(call: Callable[..., Coroutine[Any, Any, Any]]) -> Any:
        @functools.wraps(call)
        async def wrapper(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if not args:
                counts[query.split()[0].rstrip(";").upper()] += 1  # BEGIN, COMMIT, ROLLBACK, ...
            return await call(self, query, *args, **kwargs)

        return wrapper

    for cls, calls in _ROUND_TRIPS.items():
        for name, trips in calls.items():
            originals.append((cls, name, getattr(cls, name)))
            setattr(cls, name, counted(name, trips, getattr(cls, name)))
    originals.append((asyncpg.connection.Connection, "execute", asyncpg.connection.Connection.execute))
    asyncpg.connection.Connection.execute = execute(asyncpg.connection.Connection.execute)  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def first_syncs(accounts: list[uuid.UUID]) -> list[HoldingSnapshot]:
    minute = utc_now().replace(second=0, microsecond=0)
    return [
        HoldingSnapshot(
            account_id=account,
            request_id=uuid.uuid4(),
            broker="sim",
            taken_at=utc_now(),
            holdings=tuple(simulated_holdings(AccountContext(account, {}), minute=minute)),
        )
        for account in accounts
    ]


async def measure(batch: int, batches: int) -> dict[str, object]:
    postgres = provide_postgres()
    try:
        postmaster = local_server_pid(postgres.how)
        if postmaster is None:
            raise SystemExit("needs a local Postgres (pg-local) to read its CPU time: unset DATABASE_URL")
        url = await fresh_database(postgres, "bench_round_trips")
        accounts = await create_accounts(url, (batches + 3) * batch)
        engine = create_engine(url)
        ledger = Ledger(sessions=session_factory(engine), bus=InMemoryBus())
        events = [first_syncs(accounts[n * batch : (n + 1) * batch]) for n in range(batches + 3)]
        for warm_up in events[:3]:  # statements prepared, pool filled
            await ledger.apply_batch(warm_up)
        with counting_round_trips() as counts:
            own, wall = time.process_time(), time.perf_counter()
            server = with_children_cpu_seconds(postmaster)
            for one in events[3:]:
                await ledger.apply_batch(one)
            own = time.process_time() - own
            server = with_children_cpu_seconds(postmaster) - server
            wall = time.perf_counter() - wall
        await engine.dispose()
    finally:
        postgres.stop()
    per_thousand = 1000 / (batches * batch)
    return {
        "batch": batch,
        "batches": batches,
        "round_trips_per_batch": round(sum(counts.values()) / batches, 1),
        "round_trips_by_call": {name: round(n / batches, 1) for name, n in counts.most_common()},
        "per_1000_snapshots_s": {
            "ledger_cpu": round(own * per_thousand, 2),
            "postgres_cpu": round(server * per_thousand, 2),
            "wall": round(wall * per_thousand, 2),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=15, help="snapshots per batch")
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    result = {**run_facts(), "machine": machine_probe(), **asyncio.run(measure(args.batch, args.batches))}
    print(json.dumps(result, indent=2))
