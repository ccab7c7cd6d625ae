"""Fetcher throughput over real Kafka, against the seed's sequential loop, and under a tight rate limit.

    make bench-fetcher          # or: .venv/bin/python bench/fetcher.py [--accounts 6000]

Run 1 (throughput): N sync requests wait on a real Kafka topic; one fetcher (this process, the same
wiring as `portfolio-sync fetcher --broker sim`) consumes them, asks the simulated broker (200 ms per
call), publishes each snapshot and commits. accounts/s = N / (first request consumed .. last
snapshot acknowledged and committed).
Baseline (same script, same Kafka): the seed's `sync_holdings` loop — one account after another:
fetch, then publish its snapshot and wait for the acknowledgement.
Run 2 (rate limit): a tight per-broker limit; every grant of the limiter is timed, and the highest
rate seen in any 1 s window must not exceed the limit.

Writes bench/results/fetcher.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from machine import machine_probe, own_peak_rss_mb, run_facts

from infra import KafkaService, provide_kafka
from services.fetcher.adapter import AccountContext, fetch_holdings
from services.fetcher.brokers.simulated import SimulatedBroker
from services.fetcher.limits import TokenBucket
from services.fetcher.main import FetcherRuntime, build_fetcher
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.events import HoldingSnapshot, SyncRequested, SyncTrigger, utc_now
from shared.logs import configure_logging
from shared.settings import Settings

RESULTS = Path(__file__).parent / "results" / "fetcher.json"
LATENCY_MS = 200.0


@dataclass
class Timed:
    seconds: float
    count: int

    @property
    def per_s(self) -> float:
        return self.count / self.seconds


class RecordingBucket(TokenBucket):
    """The limiter's own bucket, noting when each request was let through."""

    grants: list[float]

    async def acquire(self) -> None:
        await super().acquire()
        self.grants.append(time.monotonic())


def _settings(kafka: KafkaService, namespace: str, limits: dict[str, float] | None = None) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_namespace=namespace,
        credentials_keys=CredentialCipher.generate_key(),
        simulated_latency_ms=LATENCY_MS,
        broker_limits={"sim": limits} if limits else {},
        log_level="WARNING",
    )


async def _fresh_bus(kafka: KafkaService) -> tuple[KafkaBus, str]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics(["sim"]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    return bus, namespace


async def _requests(bus: KafkaBus, count: int) -> None:
    for start in range(0, count, 2000):
        batch = [
            SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.SCHEDULE)
            for _ in range(min(2000, count - start))
        ]
        await bus.publish([OutgoingMessage.of(topics.sync_requests("sim"), r) for r in batch])


async def _drain(runtime: FetcherRuntime, count: int, *, progress: str) -> Timed:
    """Run the fetcher until `count` requests are handled; time from the first consumed to the last."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    started = None
    last_report = 0.0
    while runtime.handled < count:
        if task.done():
            task.result()
            raise RuntimeError("the fetcher stopped early")
        if started is None and runtime.limiter.requests.grants:  # type: ignore[attr-defined]
            started = runtime.limiter.requests.grants[0]  # type: ignore[attr-defined]
        now = time.monotonic()
        if now - last_report > 2:
            print(f"  {progress}: {runtime.handled}/{count} handled", flush=True)
            last_report = now
        await asyncio.sleep(0.01)  # polling the fetcher's committed count
    finished = time.monotonic()
    stop.set()
    await task
    assert started is not None
    return Timed(finished - started, count)


def _instrument(runtime: FetcherRuntime) -> RecordingBucket:
    limits = runtime.limiter.limits
    bucket = RecordingBucket(limits.rate_per_s, limits.burst)
    bucket.grants = []
    runtime.limiter.requests = bucket
    return bucket


async def throughput(kafka: KafkaService, accounts: int) -> Timed:
    bus, namespace = await _fresh_bus(kafka)
    try:
        await _requests(bus, accounts)
        runtime = build_fetcher(_settings(kafka, namespace), "sim", bus)
        _instrument(runtime)
        return await _drain(runtime, accounts, progress="throughput")
    finally:
        await bus.close()


async def seed_loop(kafka: KafkaService, accounts: int) -> Timed:
    """The seed's way: for each account, fetch, then write and wait, before the next account."""
    bus, _ = await _fresh_bus(kafka)
    broker = SimulatedBroker(latency_s=LATENCY_MS / 1000, failure_rate=0)
    try:
        started = time.monotonic()
        for _ in range(accounts):
            account = AccountContext(uuid.uuid4(), {})
            holdings = await fetch_holdings(broker, account)
            snapshot = HoldingSnapshot(
                account_id=account.account_id,
                request_id=uuid.uuid4(),
                broker="sim",
                taken_at=utc_now(),
                holdings=tuple(holdings),
            )
            await bus.publish([OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, snapshot)])
        return Timed(time.monotonic() - started, accounts)
    finally:
        await bus.close()


def max_rate_in_any_second(grants: list[float]) -> int:
    """The most grants inside any half-open window of one second."""
    most, left = 0, 0
    for right, at in enumerate(grants):
        while at - grants[left] >= 1.0:
            left += 1
        most = max(most, right - left + 1)
    return most


async def rate_limited(kafka: KafkaService, rate_per_s: float, accounts: int) -> dict[str, float]:
    bus, namespace = await _fresh_bus(kafka)
    try:
        await _requests(bus, accounts)
        limits = {"rate_per_s": rate_per_s, "burst": 1, "concurrency": 64}
        runtime = build_fetcher(_settings(kafka, namespace, limits), "sim", bus)
        bucket = _instrument(runtime)
        timed = await _drain(runtime, accounts, progress="rate-limited")
        grants = sorted(bucket.grants)
        return {
            "limit_per_s": rate_per_s,
            "accounts": accounts,
            "max_observed_per_s": max_rate_in_any_second(grants),
            "mean_per_s": round((len(grants) - 1) / (grants[-1] - grants[0]), 2),
            "seconds": round(timed.seconds, 2),
        }
    finally:
        await bus.close()


async def main(accounts: int, sequential: int, rate_limit: float, runs: int) -> dict[str, object]:
    """`runs` runs (baseline, throughput and the rate-limited run each time); the figures are the
    run of median ratio to the baseline, with every run's beside them, and this process's peak RSS
    (the fetcher runs in it)."""
    # aiokafka's retries right after topic creation are noise here
    configure_logging("ERROR", json_lines=False)
    result: dict[str, object] = {**run_facts(), "machine": machine_probe()}
    kafka = provide_kafka()
    try:
        print(f"Kafka: {kafka.how}")
        measured = []
        for run in range(runs):
            print(f"run {run + 1} of {runs}", flush=True)
            measured.append(await one_run(kafka, accounts, sequential, rate_limit))
    finally:
        kafka.stop()
    median = sorted(measured, key=lambda m: float(str(m["ratio"])))[len(measured) // 2]
    keys = ("accounts_per_s", "sequential_accounts_per_s", "ratio")
    return (
        result
        | median
        | {"runs": [{k: m[k] for k in keys} for m in measured], "peak_rss_mb": round(own_peak_rss_mb(), 1)}
    )


async def one_run(
    kafka: KafkaService, accounts: int, sequential: int, rate_limit: float
) -> dict[str, object]:
    print(f"sequential baseline: {sequential} accounts, one after another ...", flush=True)
    seed = await seed_loop(kafka, sequential)
    print(f"throughput: {accounts} accounts through one fetcher ...", flush=True)
    fast = await throughput(kafka, accounts)
    print(f"rate limit {rate_limit}/s ...", flush=True)
    limited = await rate_limited(kafka, rate_limit, int(rate_limit * 8))
    result: dict[str, object] = {
        "broker_latency_ms": LATENCY_MS,
        "accounts": accounts,
        "accounts_per_s": round(fast.per_s, 1),
        "sequential_accounts": sequential,
        "sequential_accounts_per_s": round(seed.per_s, 2),
        "ratio": round(fast.per_s / seed.per_s, 1),
        "rate_limited": limited,
        "targets": {"accounts_per_s": ">= 300", "ratio": ">= 50", "max_observed_per_s": "<= limit_per_s"},
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=6000, help="requests in the throughput run")
    parser.add_argument("--sequential", type=int, default=25, help="accounts in the sequential baseline")
    parser.add_argument("--rate-limit", type=float, default=50.0, help="requests/s in the rate-limit run")
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.accounts, args.sequential, args.rate_limit, args.runs))
    RESULTS.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
    limited = outcome["rate_limited"]
    assert isinstance(limited, dict)
    ok = (
        float(str(outcome["accounts_per_s"])) >= 300
        and float(str(outcome["ratio"])) >= 50
        and limited["max_observed_per_s"] <= limited["limit_per_s"]
    )
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)
