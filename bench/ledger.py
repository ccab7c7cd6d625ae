"""Ledger ingest speed and memory on real Kafka and Postgres, against two baselines on the same database.

    make bench-ledger        # or: .venv/bin/python bench/ledger.py [--accounts 5000 --snapshots 10]

1. Ledger: N snapshots of 20 holdings (accounts x successive snapshots, each changing a position) wait
   on holdings.snapshots; `portfolio-sync ledger` (its own process) consumes them into Postgres.
   holdings_per_s = holdings / (first snapshot stored .. last snapshot stored); the process's RSS is
   sampled throughout for the progress lines; peak_rss_mb is the kernel's high-water mark (VmHWM);
   ledger_cpu_s_per_100k_holdings its user + system CPU (/proc) over its life, startup included,
   which moves less with a busy machine than holdings/s does.
2. Raw limit: the same holdings, as a file prepared beforehand, COPY'd into a staging table and moved
   with one INSERT .. ON CONFLICT: no Kafka, no Python per row.
3. Seed's way: `update_or_create` per holding (a transaction with a SELECT, then an INSERT or UPDATE),
   as the seed's sync_holdings did, on a sample of the holdings.

Writes bench/results/ledger.json. The ledger logs warnings only; BENCH_LEDGER_LOG_LEVEL=INFO (say)
gives a line per batch it commits, with its time: where it stalled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.partitioner import DefaultPartitioner
from bench_accounts import create_accounts, fresh_database
from machine import cpu_seconds, machine_probe, peak_rss_mb, run_facts
from sqlalchemy import String, Uuid, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from infra import REPO, KafkaService, PostgresService, provide_kafka, provide_postgres
from services.ledger.plan import BatchPlan
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine, session_factory
from shared.db.tables import Snapshot
from shared.db.types import ExactDecimal, UtcDateTime
from shared.events import AssetType, Holding, HoldingSnapshot, utc_now
from shared.logs import configure_logging

RESULTS = Path(__file__).parent / "results" / "ledger.json"
HOLDINGS = 20
PARTITIONS = 4


def bench_snapshot(
    account_id: uuid.UUID, n: int, start: datetime, *, prices_move: bool = False, **given: Any
) -> HoldingSnapshot:
    """An account's `n`-th successive snapshot of the workload: 20 holdings, the `n % 20`-th of them
    changed; its prices move with every sync if `prices_move`; `given` fixes other fields (ids, times)."""
    return HoldingSnapshot(
        **({"request_id": uuid.uuid4()} | given),
        account_id=account_id,
        broker="sim",
        taken_at=start + timedelta(minutes=n),
        holdings=tuple(
            Holding(
                symbol=f"SYM{i:02d}",
                exchange="NSE",
                isin=f"INE{i:03d}A01020",
                currency="INR",
                asset_type=AssetType.EQUITY,
                quantity=Decimal(100 + (n if i == n % HOLDINGS else 0)),
                average_price=Decimal("1234.5678"),
                last_price=Decimal("1240.10") + (n if prices_move else 0),
            )
            for i in range(HOLDINGS)
        ),
    )


def _partition(key: str) -> int:
    """The partition the bus's producer sends `key` to (Kafka's default partitioner)."""
    every = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key.encode(), every, every))


# Is an autovacuum worker busy in this database: sampled with each poll, so a run can say what share
# of it shared the 2 cores with autovacuum (a layout that inserts 20 rows a snapshot sets it off).
_AUTOVACUUM_BUSY = text(
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
    "AND datname = current_database() AND state = 'active'"
)
_CHECKPOINTS = text("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")


async def _stored(session: AsyncSession) -> int:
    """How many snapshots are stored: a count(*), run only until the first is and for progress."""
    return await session.scalar(select(func.count()).select_from(Snapshot)) or 0


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def ledger_run(
    kafka: KafkaService,
    postgres: PostgresService,
    accounts: int,
    per_account: int,
    *,
    tree: Path = REPO,
    revision: str = "head",
) -> dict[str, float]:
    """`tree`: the checkout whose ledger runs (another commit's, for bench/history.py), on a
    database migrated to `revision`."""
    url = await fresh_database(postgres, "bench_ledger", revision)
    ids = await create_accounts(url, accounts)
    namespace = f"bench-ledger-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics([]), partitions=PARTITIONS, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    start = utc_now() - timedelta(days=30)
    total = accounts * per_account
    print(f"  publishing {total} snapshots ({total * HOLDINGS} holdings) ...", flush=True)
    last_in_partition: dict[int, uuid.UUID] = {}
    for n in range(per_account):
        for chunk in range(0, accounts, 1000):
            batch = [bench_snapshot(a, n, start) for a in ids[chunk : chunk + 1000]]
            await bus.publish([OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, s) for s in batch])
            last_in_partition |= {_partition(s.key): s.event_id for s in batch}
    await bus.close()

    engine = create_engine(url)
    sessions = session_factory(engine)
    env = os.environ | {
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_NAMESPACE": namespace,
        "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
        "LOG_LEVEL": os.environ.get("BENCH_LEDGER_LOG_LEVEL", "WARNING"),
    }
    ledger = subprocess.Popen([sys.executable, "-m", "services.cli", "ledger"], env=env, cwd=tree)  # noqa: ASYNC220 - started once, polled below
    peak_rss, first_at, first_count, done = 0.0, 0.0, 0, False
    polls, autovacuum_polls, checkpoints = 0, 0, 0
    last_report = time.monotonic()
    lasts = list(last_in_partition.values())
    try:
        # Polled every 50 ms with primary-key lookups, so that watching costs Postgres nothing much:
        # each partition is applied in order, so once its last snapshot is stored, all of it is.
        while not done:
            if ledger.poll() is not None:
                raise RuntimeError(f"the ledger exited with {ledger.returncode}")
            peak_rss = max(peak_rss, _rss_mb(ledger.pid))
            async with sessions() as session:
                if not first_at:
                    first_count = await _stored(session)
                    first_at = time.monotonic() if first_count else 0.0
                    checkpoints = await session.scalar(_CHECKPOINTS) or 0
                else:
                    polls += 1
                    autovacuum_polls += bool(await session.scalar(_AUTOVACUUM_BUSY))
                done = await session.scalar(select(func.count()).where(Snapshot.id.in_(lasts))) == len(lasts)
                if time.monotonic() - last_report > 5:
                    stored = await _stored(session)
                    print(f"  ledger: {stored}/{total} snapshots, rss {peak_rss:.0f} MB", flush=True)
                    last_report = time.monotonic()
            await asyncio.sleep(0.05)  # sampling interval
        finished = time.monotonic()
        async with sessions() as session:
            checkpoints = (await session.scalar(_CHECKPOINTS) or 0) - checkpoints
        peak_rss = max(peak_rss, peak_rss_mb(ledger.pid))  # the kernel's high-water mark
        cpu = cpu_seconds(ledger.pid)  # its startup included: a second or so
    finally:
        ledger.terminate()
        ledger.wait(30)
        await engine.dispose()
    async with sessions() as session:
        assert await _stored(session) == total, "every snapshot stored once"
    holdings = (total - first_count) * HOLDINGS
    return {
        "holdings": total * HOLDINGS,
        "holdings_per_s": holdings / (finished - first_at),
        "peak_rss_mb": peak_rss,
        "cpu_s_per_100k_holdings": cpu / (total * HOLDINGS) * 100_000,
        "autovacuum_busy_share": autovacuum_polls / polls if polls else 0.0,
        "checkpoints": checkpoints,
    }


SNAPSHOT_COLUMNS = ["id", "account_id", "request_id", "taken_at", "received_at", "holdings_count", "status"]


async def raw_limit(postgres: PostgresService, accounts: int, per_account: int) -> float:
    """The ledger's history writes at the database's pace: files prepared beforehand, COPY'd into
    staging tables, then one INSERT .. ON CONFLICT each into snapshots and snapshot_holdings."""
    url = await fresh_database(postgres, "bench_raw")
    ids = await create_accounts(url, accounts)
    taken = utc_now().isoformat()
    with (
        tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as snapshot_file,
        tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as holding_file,
    ):
        for account in ids:
            for _ in range(per_account):
                snapshot_id = uuid.uuid4()
                snapshot_file.write(
                    f"{snapshot_id},{account},{snapshot_id},{taken},{taken},{HOLDINGS},applied\n"
                )
                for i in range(HOLDINGS):
                    holding_file.write(
                        f"{snapshot_id},SYM{i:02d},NSE,INE{i:03d}A01020,INR,equity,100,1234.5678,1240.10\n"
                    )
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        started = time.monotonic()
        async with conn.transaction():
            for table, source, columns in (
                ("snapshots", snapshot_file.name, SNAPSHOT_COLUMNS),
                ("snapshot_holdings", holding_file.name, list(BatchPlan.HOLDING_COLUMNS)),
            ):
                # Named columns: the tables have more (announcements, ...) that the ledger fills later.
                listed = ", ".join(columns)
                await conn.execute(
                    f"CREATE TEMP TABLE staging_{table} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
                )
                await conn.copy_to_table(f"staging_{table}", source=source, format="csv", columns=columns)
                await conn.execute(
                    f"INSERT INTO {table} ({listed}) SELECT {listed} FROM staging_{table} "
                    "ON CONFLICT DO NOTHING"
                )
        elapsed = time.monotonic() - started
    finally:
        await conn.close()
        os.unlink(snapshot_file.name)
        os.unlink(holding_file.name)
    return accounts * per_account * HOLDINGS / elapsed


class _SeedBase(DeclarativeBase):
    pass


class SeedHolding(_SeedBase):
    """The seed's Holding model: one row per (broker account, symbol, as_of)."""

    __tablename__ = "seed_holdings"
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    average_price: Mapped[Decimal] = mapped_column(ExactDecimal)


async def seed_way(postgres: PostgresService, holdings: int) -> float:
    """`Holding.objects.update_or_create(...)` per holding, as the seed's sync_holdings loop: an atomic
    block that selects the row FOR UPDATE, then inserts or updates it, through the ORM."""
    url = await fresh_database(postgres, "bench_seed")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_SeedBase.metadata.create_all)
    sessions = session_factory(engine)
    accounts = [uuid.uuid4() for _ in range(holdings // HOLDINGS)]
    as_of = utc_now()
    try:
        started = time.monotonic()
        for account in accounts:
            for i in range(HOLDINGS):
                async with sessions.begin() as session:
                    found = await session.scalar(
                        select(SeedHolding)
                        .where(
                            SeedHolding.account_id == account,
                            SeedHolding.symbol == f"SYM{i:02d}",
                            SeedHolding.as_of == as_of,
                        )
                        .with_for_update()
                    )
                    if found is None:
                        session.add(
                            SeedHolding(
                                account_id=account,
                                symbol=f"SYM{i:02d}",
                                as_of=as_of,
                                quantity=Decimal(100),
                                average_price=Decimal("1234.5678"),
                            )
                        )
                    else:
                        found.quantity, found.average_price = Decimal(100), Decimal("1234.5678")
        return holdings / (time.monotonic() - started)
    finally:
        await engine.dispose()


async def main(accounts: int, per_account: int, seed_sample: int, runs: int) -> dict[str, object]:
    """`runs` runs (ledger, raw limit and seed's way each time); the figures are the run of median
    ratio to the raw limit, with every run's ratios beside them."""
    configure_logging("ERROR", json_lines=False)
    result: dict[str, object] = {**run_facts(), "machine": machine_probe()}
    kafka, postgres = provide_kafka(), provide_postgres()
    try:
        print(f"Kafka: {kafka.how}; Postgres: {postgres.how}")
        measured = []
        for run in range(runs):
            print(f"run {run + 1} of {runs}", flush=True)
            measured.append(await one_run(kafka, postgres, accounts, per_account, seed_sample))
    finally:
        kafka.stop()
        postgres.stop()
    median = sorted(measured, key=lambda m: float(str(m["ratio_to_limit"])))[len(measured) // 2]
    keys = (
        "holdings_per_s",
        "ratio_to_limit",
        "ratio_to_seed",
        "peak_rss_mb",
        "ledger_cpu_s_per_100k_holdings",
    )
    return result | median | {"runs": [{k: m[k] for k in keys} for m in measured]}


async def one_run(
    kafka: KafkaService, postgres: PostgresService, accounts: int, per_account: int, seed_sample: int
) -> dict[str, object]:
    print("ledger ...", flush=True)
    ledger = await ledger_run(kafka, postgres, accounts, per_account)
    print("raw limit ...", flush=True)
    raw = await raw_limit(postgres, accounts, per_account)
    print("seed's way ...", flush=True)
    seed = await seed_way(postgres, seed_sample)
    return {
        "holdings": int(ledger["holdings"]),
        "holdings_per_s": round(ledger["holdings_per_s"]),
        "raw_limit_per_s": round(raw),
        "seed_per_s": round(seed),
        "ratio_to_limit": round(ledger["holdings_per_s"] / raw, 2),
        "ratio_to_seed": round(ledger["holdings_per_s"] / seed, 1),
        "peak_rss_mb": round(ledger["peak_rss_mb"], 1),
        "ledger_cpu_s_per_100k_holdings": round(ledger["cpu_s_per_100k_holdings"], 2),
        "targets": {"ratio_to_limit": ">= 0.6", "ratio_to_seed": ">= 50", "peak_rss_mb": "< 300"},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--snapshots", type=int, default=10, help="successive snapshots per account")
    parser.add_argument("--seed-sample", type=int, default=20_000, help="holdings written the seed's way")
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.accounts, args.snapshots, args.seed_sample, args.runs))
    RESULTS.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
    ok = (
        float(str(outcome["ratio_to_limit"])) >= 0.6
        and float(str(outcome["ratio_to_seed"])) >= 50
        and float(str(outcome["peak_rss_mb"])) < 300
    )
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)
