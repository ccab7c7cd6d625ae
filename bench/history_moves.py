"""Moving old-layout history into versions: migration 0014 as it was at `--old` (the whole move in
the migration's one transaction) against this checkout's `portfolio-sync db upgrade` (0014 only
creates the structures; the move runs after it, `--batch` accounts per transaction), alternately
(old, new, old, new, ...) on copies of one database filled in the old layout.

    .venv/bin/python bench/history_moves.py [--accounts 200 --days 5 --batch 50 --rounds 3 --old 54c8ae5]

The old layout is bench-history's (bench/history.py: 20 holdings an account, 26 syncs a day, 1% of
positions changing a day, every price moving every sync). Per run: wall seconds of the upgrade
process, its CPU seconds, the longest transaction (the old migration's is the whole upgrade, and its
ALTER TABLE on `snapshots` keeps every read of snapshots waiting all along; the new one's is its
longest batch), the longest wait of a read of `snapshots` probed every 50 ms meanwhile, and the rows
it leaves, which must be the same for both.

Writes bench/results/history_moves.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from history import Simulation, _old_tree, load
from machine import machine_probe, run_facts

from infra import REPO, PostgresService, provide_postgres

RESULTS = Path(__file__).parent / "results" / "history_moves.json"
TEMPLATE = "bench_history_old"  # bench/history.py's old-layout database
OLD_UPGRADE = """
import asyncio, sys, time
from shared.db.engine import create_engine, upgrade_schema
async def main():
    engine = create_engine(sys.argv[1])
    began = time.monotonic()
    await upgrade_schema(engine)
    print(f"upgrade {time.monotonic() - began:.3f} s")
    await engine.dispose()
asyncio.run(main())
"""


async def _clone(postgres: PostgresService, name: str) -> str:
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await admin.close()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


async def _drop(postgres: PostgresService, name: str) -> None:
    admin = await asyncpg.connect(postgres.dsn)
    try:
        for attempt in range(10):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                # FORCE may not end an autovacuum worker that just started on it: it ends on its own.
                await asyncio.sleep(0.2 * (attempt + 1))
    finally:
        await admin.close()


async def _rows(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in ("position_versions", "instrument_prices", "snapshot_holdings")
        }
    finally:
        await conn.close()


def _run(command: list[str], cwd: Path, url: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one upgrade process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        command,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


async def _probe_reads(url: str, stop: asyncio.Event) -> list[float]:
    """The latency of an API-like read of one snapshot row, every 50 ms until `stop`: how long the
    upgrade keeps readers of `snapshots` waiting."""
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    latencies = []
    try:
        while not stop.is_set():
            began = time.monotonic()
            await conn.fetchval("SELECT taken_at FROM snapshots LIMIT 1")
            latencies.append(time.monotonic() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await conn.close()
    return latencies


async def one_run(postgres: PostgresService, variant: str, tree: Path, batch: int) -> dict[str, object]:
    url = await _clone(postgres, f"bench_moves_{variant}")
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe_reads(url, stop))
    try:
        if variant == "old":
            command, cwd, pattern = [sys.executable, "-c", OLD_UPGRADE, url], tree, r"upgrade ([\d.]+) s"
        else:
            command = [sys.executable, "-m", "services.cli", "db", "upgrade", "--history-batch", str(batch)]
            cwd, pattern = REPO, r"longest transaction ([\d.]+) s"
        wall, cpu, out = await asyncio.to_thread(_run, command, cwd, url)
        stop.set()
        reads = await probe
        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "longest_transaction_s": float(re.findall(pattern, out)[0]),
            "longest_read_wait_s": round(max(reads), 3),
            "reads": len(reads),
            "rows": await _rows(url),
        }
    finally:
        await _drop(postgres, f"bench_moves_{variant}")


async def main(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {**run_facts(), "machine": machine_probe()}
    postgres = provide_postgres()
    try:
        with tempfile.TemporaryDirectory() as folder:
            sim = Simulation(args.accounts, args.days)
            _, _ = await load(postgres, sim, "old", Path(folder))
            tree = _old_tree(Path(folder), args.old)
            runs: dict[str, list[dict[str, object]]] = {"old": [], "new": []}
            for n in range(args.rounds):
                for variant in ("old", "new"):
                    run = await one_run(postgres, variant, tree, args.batch)
                    print(f"round {n + 1}, {variant}: {json.dumps(run)}", flush=True)
                    runs[variant].append(run)
    finally:
        postgres.stop()
    holdings = args.accounts * args.days * 26 * 20
    summary = {
        variant: {
            key: statistics.median(float(r[key]) for r in variant_runs)  # type: ignore[arg-type]
            for key in ("wall_s", "cpu_s", "longest_transaction_s", "longest_read_wait_s")
        }
        for variant, variant_runs in runs.items()
    }
    result["history_moves"] = {
        "accounts": args.accounts,
        "days": args.days,
        "holding_rows": holdings,
        "batch_accounts": args.batch,
        "old_commit": args.old,
        "runs": runs,
        "median": summary,
        "same_rows": all(r["rows"] == runs["old"][0]["rows"] for rs in runs.values() for r in rs),
        "ratio_old_to_new": {k: round(summary["old"][k] / summary["new"][k], 2) for k in summary["new"]},
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50, help="accounts per transaction of the new move")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old", default="54c8ae5", help="the commit whose migration 0014 moved all at once")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    print(json.dumps(outcome["history_moves"], indent=2))
    RESULTS.write_text(json.dumps(outcome, indent=2) + "\n")
