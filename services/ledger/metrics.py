"""The ledger's Prometheus metrics. Counted per batch, never per holding: the ledger writes some
90,000 holdings a second, and a metric update per holding would show in that."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

from services.ledger.plan import BatchPlan

BATCH_EVENTS = Histogram(
    "portfolio_sync_ledger_batch_events",
    "Events (snapshots, failures, reviews) in one batch the ledger wrote, after deduplication.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
WRITE_DURATION = Histogram(
    "portfolio_sync_ledger_write_duration_seconds",
    "Time one batch's database transaction took (COPY, updates, commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HOLDINGS_WRITTEN = Counter(
    "portfolio_sync_ledger_holdings_written_total", "Holdings rows written with new snapshots."
)
SNAPSHOTS = Counter(
    "portfolio_sync_ledger_snapshots_total",
    "Snapshots given a status: applied (current positions), late (history only), held (suspicious), "
    "dismissed (held, then contradicted). A held snapshot later applied or dismissed counts twice.",
    ["outcome"],
)
SKIPPED_FOR_VANISHED_ACCOUNTS = Counter(
    "portfolio_sync_ledger_vanished_account_events_total",
    "Events skipped because their account no longer exists (deleted while its sync was in flight).",
)
OUTBOX_BACKLOG = Gauge(
    "portfolio_sync_ledger_outbox_messages",
    "HoldingsChanged messages committed but not yet relayed to Kafka (sampled every sweep).",
)
OUTBOX_OLDEST_AGE = Gauge(
    "portfolio_sync_ledger_outbox_oldest_age_seconds",
    "Age of the oldest message waiting in the outbox; 0 when it is empty (sampled every sweep).",
)

_STATUS = BatchPlan.SNAPSHOT_COLUMNS.index("status")
_HOLDINGS_COUNT = BatchPlan.SNAPSHOT_COLUMNS.index("holdings_count")


def count_written(plan: BatchPlan, *, seconds: float) -> None:
    """Record a batch that has just committed."""
    BATCH_EVENTS.observe(plan.events)
    WRITE_DURATION.observe(seconds)
    outcomes = Tally(row[_STATUS] for row in plan.snapshots)
    outcomes.update(plan.status_changes.values())
    for outcome, count in outcomes.items():
        SNAPSHOTS.labels(outcome=str(outcome)).inc(count)
    holdings = sum(row[_HOLDINGS_COUNT] for row in plan.snapshots)
    if holdings:
        HOLDINGS_WRITTEN.inc(holdings)
