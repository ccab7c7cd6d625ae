"""Fetchers of one broker scaled to 1, 2 and 3 processes, against a fake broker with 200 ms latency.

    make bench-scale        # or: .venv/bin/python bench/scale.py [--runs 3]

(a) Application-wide limit: `portfolio-sync fetcher --broker zerodha` processes against the fake Kite,
    which enforces 10 requests per second per API key in its own one-second windows and answers 429
    past it. Every account logs in through the same API key. Over every request the fake saw (warm-up
    included), the busiest one-second window (sliding) must hold at most 10 and no 429 may be sent,
    whatever the number of processes.
(b) Per-account limit: `--broker alpaca` processes against the fake Alpaca (200 requests a minute per
    account, in its own minute windows); one key pair per account. Each process syncs its own
    accounts, 5 at a time (BROKER_LIMITS concurrency), paced by the broker's latency, so 2 processes
    must sync at least 1.6x as many accounts per second as one.

Each process count is warmed up (until every process has fetched), then measured `--runs` times; the
figures are the median run. Beside them: the fetchers' CPU (seconds and % of one core over the run),
their peak RSS (VmHWM) and this process's (fake and observer), the machine probe, commit and date.

Writes bench/results/scale.json; exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine import cpu_seconds, machine_probe, own_peak_rss_mb, peak_rss_mb, run_facts

from infra import KafkaService, provide_kafka
from services.fetcher.testing import serve_fake
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage, Subscription
from shared.credentials import CredentialCipher
from shared.events import HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from shared.logs import configure_logging
from tests.fakes import alpaca, zerodha
from tests.fakes.latency import Delayed
from tests.fakes.rate_windows import FixedWindowLimit, most_in_any_window
from tests.support.processes import ServiceProcesses

RESULTS = Path(__file__).parent / "results" / "scale.json"
LATENCY_S = 0.2
PROCESS_COUNTS = (1, 2, 3)
# Accounts a fetcher fetches at once, in the per-account run. Below the default 10, so that a process
# is paced by the broker's latency (5 / 0.2 s = 25 accounts/s at most), not by the two cores this
# machine shares between the fetchers, Kafka, the fake and this process: what is measured is whether
# the limit lets processes add up, not how much Python two cores run.
ACCOUNT_RUN_CONCURRENCY = 5


class Scenario:
    """One broker's fake and the credentials of the accounts the benchmark syncs through it."""

    def __init__(self, broker: str, cipher: CredentialCipher) -> None:
        self.broker = broker
        self._cipher = cipher
        if broker == "zerodha":
            self.fake: Any = zerodha.ZerodhaFake()
            # One API key for every account (the application's): one budget for all of them.
            self._sealed = cipher.encrypt({"api_key": zerodha.API_KEY, "access_token": zerodha.ACCESS_TOKEN})
        else:
            self.fake = alpaca.AlpacaFake(key_id="bench-key", secret_key="bench-secret")

    @property
    def limit(self) -> FixedWindowLimit:
        limit: FixedWindowLimit = self.fake.rate_limit
        return limit

    def requests(self, count: int) -> list[SyncRequested]:
        made = []
        for _ in range(count):
            if self.broker == "zerodha":
                sealed = self._sealed
            else:  # an account of its own, with its own key pair, as Alpaca counts per account
                key_id, secret = f"PK{uuid.uuid4().hex[:18].upper()}", uuid.uuid4().hex
                self.fake.other_keys[key_id] = secret
                sealed = self._cipher.encrypt({"key_id": key_id, "secret_key": secret})
            made.append(
                SyncRequested(
                    account_id=uuid.uuid4(),
                    broker=self.broker,
                    trigger=SyncTrigger.SCHEDULE,
                    credentials_ciphertext=sealed,
                )
            )
        return made


async def _publish(bus: KafkaBus, broker: str, requests: Sequence[SyncRequested]) -> None:
    await bus.publish([OutgoingMessage.of(topics.sync_requests(broker), r) for r in requests])


async def _until_answered(
    snapshots: Subscription, wanted: set[uuid.UUID], seen: dict[uuid.UUID, str], check: Callable[[], None]
) -> float:
    """Collect snapshots until every request in `wanted` has one; when the last came (time.time())."""
    last = time.time()
    deadline = time.monotonic() + 300
    while not wanted <= seen.keys():
        check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(wanted - seen.keys())} requests unanswered after 300 s")
        records = await snapshots.fetch(max_records=1000, timeout_s=0.2)
        for record in records:
            snapshot = decode_event(HoldingSnapshot, record.value)
            seen[snapshot.request_id] = snapshot.fetcher_id
            if snapshot.request_id in wanted:
                last = time.time()
    return last


async def measure(
    kafka: KafkaService, broker: str, processes: int, runs: int, per_run: int
) -> dict[str, object]:
    namespace = f"scale-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics([broker]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    key = CredentialCipher.generate_key()
    scenario = Scenario(broker, CredentialCipher(key))
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-scale-{broker}-"))
    snapshots = await bus.subscribe([topics.HOLDINGS_SNAPSHOTS], group="observer")
    seen: dict[uuid.UUID, str] = {}
    measured: list[dict[str, float]] = []
    try:
        async with serve_fake(Delayed(scenario.fake, LATENCY_S)) as base_url:
            fetchers = ServiceProcesses(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                    "KAFKA_NAMESPACE": namespace,
                    "CREDENTIALS_KEYS": key,
                    "BROKER_BASE_URLS": json.dumps({broker: base_url}),
                    "BROKER_LIMITS": json.dumps(
                        {"alpaca": {"concurrency": ACCOUNT_RUN_CONCURRENCY}} if broker == "alpaca" else {}
                    ),
                    "LOG_LEVEL": "WARNING",
                    "RAW_ARCHIVE": "none",  # no database here: the archive is tested elsewhere
                },
                log_dir,
            )
            try:
                started_processes = [
                    fetchers.start(f"fetcher-{n}", "fetcher", "--broker", broker) for n in range(processes)
                ]
                pids = [process.pid for process in started_processes]
                # Warm up until every process has fetched: all have joined both groups, and the group
                # has settled. A few requests at a time, so that no queue is left for the runs.
                while len(set(seen.values())) < processes:
                    batch = scenario.requests(2 * processes)
                    await _publish(bus, broker, batch)
                    await _until_answered(snapshots, {r.event_id for r in batch}, seen, fetchers.assert_alive)
                print(f"  {broker}, {processes} process(es): warmed up", flush=True)
                for run in range(runs):
                    batch = scenario.requests(per_run)
                    first_arrival = len(scenario.limit.arrivals)
                    rejected_before = scenario.limit.rejected
                    cpu_before = sum(cpu_seconds(pid) for pid in pids)
                    await _publish(bus, broker, batch)
                    last = await _until_answered(
                        snapshots, {r.event_id for r in batch}, seen, fetchers.assert_alive
                    )
                    started = scenario.limit.arrivals[first_arrival]
                    wall = last - started
                    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
                    measured.append(
                        {
                            "accounts_per_s": per_run / wall,
                            "seconds": wall,
                            "rejected_429": scenario.limit.rejected - rejected_before,
                            "fetchers_cpu_s": cpu,
                            "fetchers_cpu_percent": 100 * cpu / wall,
                            "fetchers_taking_part": len({seen[r.event_id] for r in batch}),
                        }
                    )
                    print(f"  run {run + 1}: {per_run / wall:.1f} accounts/s, cpu {cpu:.1f} s", flush=True)
                rss = max(peak_rss_mb(pid) for pid in pids)
            finally:
                fetchers.stop_all()
    finally:
        await snapshots.close()
        await bus.close()
    median = sorted(measured, key=lambda run: run["accounts_per_s"])[len(measured) // 2]
    return {
        "processes": processes,
        "accounts_per_s": round(median["accounts_per_s"], 2),
        "runs_accounts_per_s": [round(run["accounts_per_s"], 2) for run in measured],
        "busiest_second": most_in_any_window(scenario.limit.arrivals),
        "requests_seen_by_broker": len(scenario.limit.arrivals),
        "rejected_429": scenario.limit.rejected,
        "fetchers_taking_part": int(median["fetchers_taking_part"]),
        "fetchers_cpu_s": round(median["fetchers_cpu_s"], 2),
        "fetchers_cpu_percent": round(median["fetchers_cpu_percent"], 1),
        "fetchers_peak_rss_mb": round(rss, 1),
    }


async def main(runs: int) -> dict[str, object]:
    configure_logging("ERROR", json_lines=False)
    facts = run_facts()
    probe = machine_probe()
    print(f"machine probe: {probe['probe_ms']} ms", flush=True)
    kafka = provide_kafka()
    try:
        print(f"Kafka: {kafka.how}", flush=True)
        per_run = 4 * zerodha.RATE_LIMIT_PER_S  # four seconds' worth of the limit
        application = [await measure(kafka, "zerodha", n, runs, per_run=per_run) for n in PROCESS_COUNTS]
        account = [await measure(kafka, "alpaca", n, runs, per_run=200) for n in PROCESS_COUNTS]
    finally:
        kafka.stop()
    one, two = (float(str(row["accounts_per_s"])) for row in account[:2])
    return {
        **facts,
        "machine": probe,
        "broker_latency_ms": LATENCY_S * 1000,
        "runs_per_figure": runs,
        "application_limit": {
            "broker": "zerodha",
            "limit_per_s": zerodha.RATE_LIMIT_PER_S,
            "by_processes": application,
        },
        "account_limit": {
            "broker": "alpaca",
            "limit": f"{alpaca.RATE_LIMIT} per {alpaca.RATE_WINDOW_S} s per account",
            "concurrency_per_process": ACCOUNT_RUN_CONCURRENCY,
            "by_processes": account,
            "two_to_one": round(two / one, 2),
        },
        "bench_process_peak_rss_mb": round(own_peak_rss_mb(), 1),
        "targets": {
            "application_limit": "busiest_second <= limit_per_s and rejected_429 == 0, for 1, 2 and 3",
            "account_limit": "two_to_one >= 1.6",
        },
    }


def targets_met(outcome: dict[str, Any]) -> bool:
    app = outcome["application_limit"]
    kept = all(
        row["busiest_second"] <= app["limit_per_s"] and row["rejected_429"] == 0
        for row in app["by_processes"]
    )
    return kept and outcome["account_limit"]["two_to_one"] >= 1.6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs per process count (median)")
    args = parser.parse_args()
    outcome = asyncio.run(main(args.runs))
    RESULTS.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps(outcome, indent=2))
    ok = targets_met(outcome)
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)
