"""End-to-end latency: SyncRequested published -> HoldingsChanged received, at a steady request rate.

    make bench-latency       # or: .venv/bin/python bench/latency.py [--rate 200 --seconds 10]

`portfolio-sync fetcher --broker sim` (simulated broker at zero latency) and `portfolio-sync ledger`
run as their own processes on real Kafka and Postgres. This script sends one SyncRequested per
account at a fixed rate (each account's first sync, so each yields a HoldingsChanged) and times
each from just before its publish to the moment its HoldingsChanged arrives here.

Writes bench/results/latency.json (p50_ms, p99_ms, rate_per_s). Target: p99 < 250 ms at 200/s.

Where the time goes, per request (`stages`, p50/p99/max of each): requested -> fetched (the
snapshot's `taken_at`), -> snapshot published (its record's CreateTime on holdings.snapshots), ->
consumed by the ledger (the stored snapshot's `received_at`), -> written to the outbox (the
HoldingsChanged record's timestamp is its outbox row's `created_at`, in the ledger's transaction),
-> received here (the commit, the relay and the delivery). One machine, one clock.

CPU per request, which the machine's load hardly changes where latency shows mostly the load:
`cpu_s_per_1000_requests` of the fetcher, the ledger, Kafka and Postgres (when started for the run)
and this script, from the first request sent to the last change received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from bench_accounts import create_accounts, fresh_database
from machine import (
    busy_percent,
    cpu_seconds,
    cpu_times,
    local_server_pid,
    machine_probe,
    peak_rss_mb,
    run_facts,
    with_children_cpu_seconds,
)

from infra import REPO, KafkaService, PostgresService, provide_kafka, provide_postgres
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.events import SyncRequested, SyncTrigger
from shared.logs import configure_logging

RESULTS = Path(__file__).parent / "results" / "latency.json"


async def measure(
    kafka: KafkaService, postgres: PostgresService, rate: float, seconds: float
) -> dict[str, float]:
    count = int(rate * seconds)
    warmup = 20
    url = await fresh_database(postgres, "bench_latency")
    accounts = await create_accounts(url, count + warmup)
    namespace = f"bench-latency-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics(["sim"]), partitions=4, namespace=namespace)
    env = os.environ | {
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_NAMESPACE": namespace,
        "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
        "SIMULATED_LATENCY_MS": "0",
        "LOG_LEVEL": "WARNING",
    }
    services = [
        subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env, cwd=REPO)  # noqa: ASYNC220
        for args in (["fetcher", "--broker", "sim"], ["ledger"])
    ]
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    # One consumer for both topics: every consumer's fetches cost Kafka CPU, which the machine's
    # two cores share with what is measured.
    observed = await bus.subscribe(
        [topics.HOLDINGS_CHANGES, topics.HOLDINGS_SNAPSHOTS], group="latency-observer"
    )
    sent: dict[uuid.UUID, float] = {}
    received: dict[uuid.UUID, float] = {}
    relayed: dict[uuid.UUID, float] = {}
    published: dict[uuid.UUID, float] = {}

    async def send(account: uuid.UUID) -> None:
        request = SyncRequested(account_id=account, broker="sim", trigger=SyncTrigger.MANUAL)
        sent[account] = time.time()
        await bus.publish([OutgoingMessage.of(topics.sync_requests("sim"), request)])

    async def observe(until: int) -> None:
        deadline = time.monotonic() + 120
        while len(received) < until:
            if time.monotonic() > deadline or any(p.poll() is not None for p in services):
                raise RuntimeError(f"only {len(received)} of {until} changes arrived")
            # By key (the account): decoding every event would cost this script's CPU too.
            for record in await observed.fetch(max_records=1000, timeout_s=0.1):
                account = uuid.UUID(record.key)
                if record.topic == topics.HOLDINGS_CHANGES:
                    received.setdefault(account, time.time())
                    relayed.setdefault(account, record.published_at or 0.0)
                else:
                    published.setdefault(account, record.published_at or 0.0)

    try:
        # Warm-up: until both services have joined their groups and answered.
        await asyncio.gather(*(send(a) for a in accounts[:warmup]))
        await observe(warmup)
        for seen in (sent, received, relayed, published):
            seen.clear()
        print(f"  sending {count} requests at {rate}/s ...", flush=True)
        observer = asyncio.create_task(observe(count))
        started = time.monotonic()
        cpu_before, machine_before = [cpu_seconds(p.pid) for p in services], cpu_times()
        own_before = time.process_time()
        spent_before = cpu_spent(services, kafka, postgres)
        pending = []
        for i, account in enumerate(accounts[warmup:]):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))  # pacing the load
            pending.append(asyncio.create_task(send(account)))
        await asyncio.gather(*pending)
        elapsed = time.monotonic() - started
        achieved = count / elapsed
        cpu = {
            name: round(100 * (cpu_seconds(p.pid) - before) / elapsed, 1)
            for name, p, before in zip(("fetcher", "ledger"), services, cpu_before, strict=True)
        }
        cpu["this_script"] = round(100 * (time.process_time() - own_before) / elapsed, 1)
        cpu["machine_busy_percent_all_cores"] = busy_percent(machine_before, cpu_times())
        await observer
        spent = cpu_spent(services, kafka, postgres)
        per_thousand = {name: round((spent[name] - spent_before[name]) * 1000 / count, 2) for name in spent}
    finally:
        await observed.close()
        await bus.close()
        peaks = {name: _peak(process) for name, process in zip(("fetcher", "ledger"), services, strict=True)}
        for process in services:
            process.terminate()
            process.wait(30)
    stored = await stored_times(url, list(sent))
    marks = {
        a: (sent[a], stored[a][0], published.get(a), stored[a][1], relayed[a], received[a])
        for a in sent
        if a in stored
    }
    latencies = sorted((received[a] - sent[a]) * 1000 for a in sent)
    return {
        "requests": count,
        "rate_per_s": round(achieved, 1),
        **percentiles(latencies),
        "stages": stage_breakdown(marks),
        "peak_rss_mb": peaks,
        "cpu_percent_of_one_core": cpu,
        "cpu_s_per_1000_requests": per_thousand,
    }


def cpu_spent(
    services: list[subprocess.Popen[bytes]], kafka: KafkaService, postgres: PostgresService
) -> dict[str, float]:
    """CPU seconds used so far by each process the pipeline runs on: the services, the Kafka and
    Postgres started for the run (not one the environment names), and this script."""
    spent = {name: cpu_seconds(p.pid) for name, p in zip(("fetcher", "ledger"), services, strict=True)}
    for name, server in (("kafka", kafka.how), ("postgres", postgres.how)):
        pid = local_server_pid(server)
        if pid is not None:
            spent[name] = with_children_cpu_seconds(pid)
    spent["this_script"] = time.process_time()
    return spent


def _peak(process: subprocess.Popen[bytes]) -> float | None:
    """The service's resident-memory high-water mark, while it still runs."""
    return round(peak_rss_mb(process.pid), 1) if process.poll() is None else None


STAGES = (
    "requested->fetched",
    "fetched->published",
    "published->consumed",
    "consumed->outboxed",
    "outboxed->received",
)


async def stored_times(url: str, accounts: list[uuid.UUID]) -> dict[uuid.UUID, tuple[float, float]]:
    """Each account's snapshot `taken_at` (fetched) and `received_at` (consumed by the ledger)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch(
            "SELECT account_id, taken_at, received_at FROM snapshots WHERE account_id = ANY($1::uuid[])",
            accounts,
        )
    finally:
        await connection.close()
    return {r["account_id"]: (r["taken_at"].timestamp(), r["received_at"].timestamp()) for r in rows}


def stage_breakdown(marks: dict[uuid.UUID, tuple[float | None, ...]]) -> dict[str, dict[str, float]]:
    """p50/p99/max of each stage (ms), over the requests whose every mark was seen."""
    complete = [m for m in marks.values() if all(t for t in m)]
    breakdown = {}
    for i, stage in enumerate(STAGES):
        spans = sorted((float(m[i + 1] or 0) - float(m[i] or 0)) * 1000 for m in complete)
        breakdown[stage] = percentiles(spans) if spans else {}
    return breakdown


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of sorted `values`."""
    return {
        "p50_ms": round(statistics.median(values), 1),
        "p99_ms": round(values[max(0, int(len(values) * 0.99) - 1)], 1),
        "max_ms": round(values[-1], 1),
    }


async def main(rate: float, seconds: float, runs: int) -> dict[str, object]:
    """`runs` runs, each on fresh services, database and topics; the figures are the run of median
    p99, with every run's p50 and p99 beside them."""
    configure_logging("ERROR", json_lines=False)
    result: dict[str, object] = {**run_facts(), "machine": machine_probe()}
    kafka, postgres = provide_kafka(), provide_postgres()
    try:
        print(f"Kafka: {kafka.how}; Postgres: {postgres.how}")
        measured = []
        for run in range(runs):
            print(f"run {run + 1} of {runs}", flush=True)
            measured.append(await measure(kafka, postgres, rate, seconds))
    finally:
        kafka.stop()
        postgres.stop()
    median = sorted(measured, key=lambda m: float(str(m["p99_ms"])))[len(measured) // 2]
    result |= median
    result["runs"] = [{k: m[k] for k in ("rate_per_s", "p50_ms", "p99_ms")} for m in measured]
    result["targets"] = {"p99_ms": "< 250", "rate_per_s": ">= 200"}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="SyncRequested per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.rate, args.seconds, args.runs))
    RESULTS.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
    ok = float(str(outcome["p99_ms"])) < 250 and float(str(outcome["rate_per_s"])) >= 0.98 * args.rate
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)
