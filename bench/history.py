"""History's size, as-of reads and ledger ingest: the old layout (every snapshot's holdings) against
the new one (positions as versions, prices as one series per instrument), in the same run.

    make bench-history       # or: .venv/bin/python bench/history.py [--accounts 1000 --days 10]

1. Size: `accounts` accounts x 20 holdings (of 500 instruments) synced every 15 minutes through a
   6.5-hour trading day (26 syncs) for `days` days, 1% of positions changing a day, every price
   moving every sync; bulk-loaded with COPY into a database at each layout (the ingest path is not
   what this measures). bytes_per_account_day: the history tables (snapshots and snapshot_holdings;
   snapshots, position_versions and instrument_prices) with their indexes, per account per day,
   the new layout at SNAPSHOT_RETENTION_DAYS's default (`--retention-days`; its snapshots loaded a
   day at a time, each day followed by the ledger's pruning and a plain VACUUM) and kept forever;
   `by_relation`: each table's heap and each index, summed over partitions.
2. As-of reads on the new layout, through the API's storage functions: one account's holdings, and a
   20-account portfolio's, at a random past time; p50 and p99 over `--queries` each, in each of
   three runs (the two kinds taking turns), and the median of the three.
3. Ledger ingest on the bench-ledger workload (bench/ledger.py): the ledger of the commit this
   branch started from (`--old`, the old layout, on its own schema) and this one's, one after the
   other; the raw COPY limit and peak RSS as bench-ledger reports them.

Writes bench/results/history.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import random
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from bench_accounts import fresh_database
from ledger import ledger_run as ingest_run
from ledger import raw_limit
from machine import machine_probe, run_facts
from sqlalchemy import event

from infra import REPO, KafkaService, PostgresService, provide_kafka, provide_postgres
from services.api.storage import account_positions, portfolio_positions
from services.ledger.plan import BatchPlan
from services.ledger.retention import prune_snapshots
from services.ledger.versions import PRICE_COLUMNS, VERSION_COLUMNS
from shared.db.engine import create_engine, session_factory
from shared.logs import configure_logging
from shared.settings import Settings

RESULTS = Path(__file__).parent / "results" / "history.json"
HOLDINGS, INSTRUMENTS, SYNCS_PER_DAY, PORTFOLIO = 20, 500, 26, 20
AS_OF_RUNS = 3
START = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
OLD_REVISION = "0013"
HISTORY_TABLES = {
    "old": ("snapshots", "snapshot_holdings"),
    "new": ("snapshots", "position_versions", "instrument_prices"),
}


def _times(days: int) -> list[datetime]:
    return [START + timedelta(days=d, minutes=15 * k) for d in range(days) for k in range(SYNCS_PER_DAY)]


def _price(instrument: int, sync: int) -> str:
    return f"{100 + instrument % 50}.{sync % 100:02d}"


class Simulation:
    """Who holds what when: each account's 20 instruments, and the (sync, account, slot) changes."""

    def __init__(self, accounts: int, days: int) -> None:
        rng = random.Random(13)
        self.owner = uuid.uuid4()  # of every portfolio
        self.accounts = [uuid.uuid4() for _ in range(accounts)]
        self.portfolios = [uuid.uuid4() for _ in range(0, accounts, PORTFOLIO)]
        self.held = [rng.sample(range(INSTRUMENTS), HOLDINGS) for _ in self.accounts]
        self.times = _times(days)
        per_day = max(1, accounts * HOLDINGS // 100)
        self.changes: dict[int, list[tuple[int, int]]] = {}
        for day in range(days):
            for _ in range(per_day):
                sync = day * SYNCS_PER_DAY + rng.randrange(SYNCS_PER_DAY)
                self.changes.setdefault(sync, []).append((rng.randrange(accounts), rng.randrange(HOLDINGS)))


def _copy_files(sim: Simulation, layout: str, folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """The layout's rows as CSV files, table -> (file, columns)."""
    files = {name: (folder / f"{layout}_{name}.csv").open("w") for name in HISTORY_TABLES[layout]}
    quantity = [[100] * HOLDINGS for _ in sim.accounts]
    for sync, at in enumerate(sim.times):
        stamp = at.isoformat()
        changed = set()
        for a, slot in sim.changes.get(sync, []):
            quantity[a][slot] += 1
            changed.add((a, slot))
        if layout == "new":
            for i in range(INSTRUMENTS):
                files["instrument_prices"].write(f"SYM{i:03d},NSE,{stamp},{_price(i, sync)},sim\n")
        for a, account in enumerate(sim.accounts):
            snapshot = uuid.uuid4()
            row = f"{snapshot},{account},{snapshot},{stamp},{stamp},{HOLDINGS},applied"
            if layout == "old":
                files["snapshots"].write(row + "\n")
                for slot, i in enumerate(sim.held[a]):
                    files["snapshot_holdings"].write(
                        f"{snapshot},SYM{i:03d},NSE,INE{i:03d}A01020,INR,equity,{quantity[a][slot]},"
                        f"1234.5678,{_price(i, sync)}\n"
                    )
                continue
            digest = hashlib.sha256(repr(quantity[a]).encode()).digest()[:16].hex()
            files["snapshots"].write(f"{row},false,\\x{digest}\n")
            for slot, i in enumerate(sim.held[a]):
                if sync == 0 or (a, slot) in changed:
                    files["position_versions"].write(
                        f"{account},SYM{i:03d},NSE,{stamp},INE{i:03d}A01020,INR,equity,{quantity[a][slot]},1234.5678\n"
                    )
    for handle in files.values():
        handle.close()
    snapshot_columns = [
        "id",
        "account_id",
        "request_id",
        "taken_at",
        "received_at",
        "holdings_count",
        "status",
    ]
    columns = {
        "snapshots": snapshot_columns + (["holdings_kept", "content_hash"] if layout == "new" else []),
        "snapshot_holdings": list(BatchPlan.HOLDING_COLUMNS),
        "position_versions": list(VERSION_COLUMNS),
        "instrument_prices": list(PRICE_COLUMNS),
    }
    return {name: (Path(handle.name), columns[name]) for name, handle in files.items()}


async def _relation_bytes(conn: asyncpg.Connection, tables: tuple[str, ...]) -> dict[str, int]:
    """Each table's heap (with its TOAST) and each of its indexes, by name; a partitioned one's
    summed over its partitions."""
    total = (
        "SELECT sum({}(relid)) FROM (SELECT $1::regclass AS relid "
        "UNION SELECT relid FROM pg_partition_tree($1::regclass)) AS tree"
    )
    sizes: dict[str, int] = {}
    for table in tables:
        sizes[table] = int(await conn.fetchval(total.format("pg_table_size"), table))
        for index in await conn.fetch(
            "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass", table
        ):
            sizes[f"{table}.{index['name']}"] = int(
                await conn.fetchval(total.format("pg_relation_size"), index["name"])
            )
    return sizes


async def load(
    postgres: PostgresService, sim: Simulation, layout: str, folder: Path, *, retention_days: float = 0
) -> tuple[str, dict[str, int]]:
    """A database at the layout, filled; its URL and the history tables' bytes by relation. With a
    retention, the new layout's snapshots go in a day at a time, each day followed by the ledger's
    pruning as of its end and a plain VACUUM (what autovacuum does): the sizes a live database
    keeps, its freed space reused by the next days' rows, or not (index pages left sparse)."""
    name = f"bench_history_{layout}" + ("_retained" if retention_days else "")
    url = await fresh_database(postgres, name, OLD_REVISION if layout == "old" else "head")
    files = _copy_files(sim, layout, folder)
    daily = files.pop("snapshots") if retention_days else None
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        user = sim.owner
        await conn.execute(
            "INSERT INTO users (id, email, created_at) VALUES ($1, $2, now())", user, f"{user}@x.test"
        )
        await conn.executemany(
            "INSERT INTO portfolios (id, user_id, name, created_at, active) VALUES ($1, $2, $3, now(), true)",
            [(p, user, str(p)) for p in sim.portfolios],
        )
        await conn.executemany(
            "INSERT INTO broker_accounts (id, portfolio_id, broker, label, created_at, consecutive_failures, "
            "needs_reauth) VALUES ($1, $2, 'sim', 'bench', now(), 0, false)",
            [(a, sim.portfolios[n // PORTFOLIO]) for n, a in enumerate(sim.accounts)],
        )
        for table, (path, columns) in files.items():
            started = time.monotonic()
            await conn.copy_to_table(table, source=str(path), columns=columns, format="csv")
            print(f"  {layout}: {table} loaded in {time.monotonic() - started:.0f} s", flush=True)
            path.unlink()
        if daily is not None:
            await _load_daily_with_retention(conn, url, sim, daily, retention_days)
        await conn.execute("VACUUM ANALYZE")
        sizes = await _relation_bytes(conn, HISTORY_TABLES[layout])
    finally:
        await conn.close()
    return url, sizes


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


async def as_of_latency(url: str, sim: Simulation, queries: int) -> dict[str, dict[str, object]]:
    """`queries` as-of reads of each kind per run, AS_OF_RUNS runs, the kinds taking turns so that a
    burst of load on the shared machine falls on both: per kind the median of the runs' p50 and of
    their p99, each run's figures, and the SQL statements a read sends (BEGIN and ROLLBACK aside)."""
    rng = random.Random(7)
    engine = create_engine(url)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    sessions = session_factory(engine)
    span = (sim.times[-1] - sim.times[0]).total_seconds()
    kinds = (
        ("account", account_positions, sim.accounts, HOLDINGS),
        ("portfolio_20", portfolio_positions, sim.portfolios, HOLDINGS * PORTFOLIO),
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in kinds}
    per_read: dict[str, float] = {}
    try:
        for _ in range(AS_OF_RUNS):
            for name, read, ids, expected in kinds:
                samples = []
                statements = 0
                for n in range(queries + 10):  # the first 10 warm up the pool and statement caches
                    at = sim.times[0] + timedelta(seconds=rng.uniform(0, span))
                    started = time.perf_counter()
                    async with sessions() as session:
                        positions = await read(session, rng.choice(ids), owner_id=sim.owner, as_of=at)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert len(positions) == expected, len(positions)
                    if n >= 10:
                        samples.append(elapsed)
                per_read[name] = statements / (queries + 10)
                runs[name].append(_percentiles(samples))
    finally:
        await engine.dispose()
    return {
        name: {
            "p50_ms": statistics.median(run["p50_ms"] for run in figures),
            "p99_ms": statistics.median(run["p99_ms"] for run in figures),
            "runs": figures,
            "statements_per_read": per_read[name],
        }
        for name, figures in runs.items()
    }


async def _load_daily_with_retention(
    conn: asyncpg.Connection, url: str, sim: Simulation, snapshots: tuple[Path, list[str]], days: float
) -> None:
    path, columns = snapshots
    rows = path.read_text().splitlines(keepends=True)
    path.unlink()
    per_day = SYNCS_PER_DAY * len(sim.accounts)  # the file is in time order
    engine = create_engine(url)
    pruned = 0
    try:
        for day in range(len(sim.times) // SYNCS_PER_DAY):
            chunk = path.with_suffix(f".{day}.csv")
            chunk.write_text("".join(rows[day * per_day : (day + 1) * per_day]))
            await conn.copy_to_table("snapshots", source=str(chunk), columns=columns, format="csv")
            chunk.unlink()
            end = sim.times[(day + 1) * SYNCS_PER_DAY - 1]
            pruned += await prune_snapshots(session_factory(engine), taken_before=end - timedelta(days=days))
            await conn.execute("VACUUM snapshots")
    finally:
        await engine.dispose()
    print(f"  new: snapshots loaded a day at a time, retention {days} days: {pruned} pruned", flush=True)


def _per_account_day(sizes: dict[str, int], sim: Simulation) -> dict[str, int]:
    days = len(sim.times) // SYNCS_PER_DAY
    return {name: round(b / (len(sim.accounts) * days)) for name, b in sizes.items()}


def _old_tree(folder: Path, commit: str) -> Path:
    """The source of `commit`, unpacked: the old layout's ledger runs from it."""
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    tree = folder / "old_tree"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


async def _holding_rows(postgres: PostgresService) -> int:
    conn = await asyncpg.connect(postgres.dsn.rsplit("/", 1)[0] + "/bench_ledger")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM snapshot_holdings"))
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, object]:
    configure_logging("ERROR", json_lines=False)
    result: dict[str, object] = {**run_facts(), "machine": machine_probe()}
    sim = Simulation(args.accounts, args.days)
    kafka: KafkaService | None = None
    postgres = provide_postgres()
    try:
        print(f"Postgres: {postgres.how}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            sizes = {}
            for layout in ("old", "new") if "old" in args.only else ("new",):
                url, sizes[layout] = await load(postgres, sim, layout, Path(folder))
            retention = args.retention_days
            sizes["new_kept_forever"] = sizes["new"]
            if retention:
                url, sizes["new"] = await load(postgres, sim, "new", Path(folder), retention_days=retention)
            per_day = {k: _per_account_day(v, sim) for k, v in sizes.items()}
            totals = {k: sum(v.values()) for k, v in per_day.items()}
            result["size"] = {
                "accounts": args.accounts,
                "days": args.days,
                "snapshot_retention_days": retention,
                "bytes_per_account_day": totals,
                **(
                    {
                        "ratio": round(totals["old"] / totals["new"], 1),
                        "ratio_kept_forever": round(totals["old"] / totals["new_kept_forever"], 1),
                    }
                    if "old" in totals
                    else {}
                ),
                "target_ratio": ">= 20",
                "by_relation": per_day,
            }
            print(json.dumps(result["size"], indent=1), flush=True)
            if "as_of" in args.only:
                result["as_of"] = await as_of_latency(url, sim, args.queries) | {
                    "targets": {"account_p99_ms": "< 20", "portfolio_20_p99_ms": "< 100"}
                }
                print(json.dumps(result["as_of"]), flush=True)
            if args.ingest_accounts and "ingest" in args.only:
                kafka = provide_kafka()
                tree = _old_tree(Path(folder), args.old)
                ingest = {}
                for layout, where, revision in (("old", tree, OLD_REVISION), ("new", REPO, "head")):
                    print(f"ingest, {layout} layout ...", flush=True)
                    run = await ingest_run(
                        kafka,
                        postgres,
                        args.ingest_accounts,
                        args.ingest_snapshots,
                        tree=where,
                        revision=revision,
                    )
                    ingest[layout] = {
                        "holdings_per_s": round(run["holdings_per_s"]),
                        "peak_rss_mb": round(run["peak_rss_mb"], 1),
                        "cpu_s_per_100k_holdings": round(run["cpu_s_per_100k_holdings"], 2),
                        "holdings_rows": await _holding_rows(postgres),
                        # What Postgres did beside the ledger, while it was measured.
                        "autovacuum_busy_share": round(run["autovacuum_busy_share"], 2),
                        "checkpoints": int(run["checkpoints"]),
                    }
                raw = await raw_limit(postgres, args.ingest_accounts, args.ingest_snapshots)
                for layout in ingest:
                    ingest[layout]["ratio_to_limit"] = round(ingest[layout]["holdings_per_s"] / raw, 2)
                result["ingest"] = ingest | {
                    "holdings": args.ingest_accounts * args.ingest_snapshots * HOLDINGS,
                    "raw_limit_per_s": round(raw),
                    "ratio_new_to_old": round(
                        ingest["new"]["holdings_per_s"] / ingest["old"]["holdings_per_s"], 2
                    ),
                    "target_ratio_new_to_old": ">= 1.5",
                    "old_commit": args.old,
                }
    finally:
        postgres.stop()
        if kafka is not None:
            kafka.stop()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--queries", type=int, default=300, help="as-of reads of each kind")
    parser.add_argument("--ingest-accounts", type=int, default=5000, help="0: skip the ingest comparison")
    parser.add_argument("--ingest-snapshots", type=int, default=10)
    parser.add_argument("--old", default="e1c279c", help="the commit whose ledger is the old layout's")
    parser.add_argument(
        "--only",
        default="old,as_of,ingest",
        help="comma-separated parts to run beside the new layout's size (which the others read): "
        "old (the old layout's size, for the ratio), as_of, ingest",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--retention-days",
        type=float,
        default=Settings.model_fields["snapshot_retention_days"].default,
        help="SNAPSHOT_RETENTION_DAYS the new layout is measured at (default: the setting's default)",
    )
    args = parser.parse_args()
    outcome = asyncio.run(main(args))
    args.out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
