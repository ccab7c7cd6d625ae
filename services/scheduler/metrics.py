"""The scheduler's Prometheus metrics (labels bounded: broker codes are the registered ones).

Sync requests emitted are counted in `shared.metrics.SYNC_REQUESTS`, which the API's "sync now"
shares."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUBLISH_FAILURES = Counter(
    "portfolio_sync_scheduler_publish_failures_total",
    "Scheduler passes in which a broker's sync requests could not be published; the broker was set aside.",
    ["broker"],
)
TICKS_CLAIMED = Counter(
    "portfolio_sync_scheduler_ticks_claimed_total",
    "Schedule ticks this scheduler claimed and published (committed), by broker.",
    ["broker"],
)
TICK_DELAY = Histogram(
    "portfolio_sync_scheduler_tick_delay_seconds",
    "How late a claimed tick was: claim time minus the time it was due.",
    ["broker"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
PASS_DURATION = Histogram(
    "portfolio_sync_scheduler_pass_duration_seconds",
    "Time one scheduler pass took (claiming and publishing every broker's due ticks).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
