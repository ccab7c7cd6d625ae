"""The scheduler's Prometheus metrics (labels bounded: broker codes are the registered ones)."""

from __future__ import annotations

from prometheus_client import Counter

PUBLISH_FAILURES = Counter(
    "portfolio_sync_scheduler_publish_failures_total",
    "Scheduler passes in which a broker's sync requests could not be published; the broker was set aside.",
    ["broker"],
)
