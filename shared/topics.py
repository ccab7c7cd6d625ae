"""Every Kafka topic name, declared once. Nothing else spells a topic inline."""

from __future__ import annotations

HOLDINGS_SNAPSHOTS = "holdings.snapshots"
SYNC_FAILURES = "sync.failures"
HOLDINGS_CHANGES = "holdings.changes"  # HoldingsChanged, and AccountRemoved when an account goes
SNAPSHOT_REVIEWS = "holdings.reviews"  # an owner's decisions on held snapshots, for the ledger
# Each fetcher process's latest heartbeat, keyed by fetcher id; a clean stop leaves a tombstone.
FETCHER_HEARTBEATS = "fetchers.heartbeats"
_SYNC_REQUESTS_PREFIX = "sync.requests."
_DLQ_SUFFIX = ".dlq"


def sync_requests(broker: str) -> str:
    """The request topic of one broker; fetchers of that broker consume it."""
    return f"{_SYNC_REQUESTS_PREFIX}{broker.lower()}"


def sync_request_retries(broker: str) -> str:
    """Where a fetcher puts a request to try again later, so one failing account blocks no other."""
    return f"{sync_requests(broker)}.retry"


def dead_letters(topic: str) -> str:
    """Where a consumer of `topic` parks a message it cannot decode, with the reason."""
    return f"{topic}{_DLQ_SUFFIX}"


def is_dead_letters(topic: str) -> bool:
    return topic.endswith(_DLQ_SUFFIX)


def dead_letter_topics(brokers: list[str]) -> list[str]:
    """The dead-letter topic of every consumed topic of a deployment serving `brokers`."""
    return [dead_letters(t) for t in _consumed(brokers)]


def _consumed(brokers: list[str]) -> list[str]:
    main = [HOLDINGS_SNAPSHOTS, SYNC_FAILURES, HOLDINGS_CHANGES, SNAPSHOT_REVIEWS]
    return main + [topic for b in brokers for topic in (sync_requests(b), sync_request_retries(b))]


COMPACTED = frozenset({FETCHER_HEARTBEATS})
"""Topics where only each key's latest message matters: Kafka keeps that one (cleanup.policy=compact)."""


def all_topics(brokers: list[str]) -> list[str]:
    """The topics a deployment serving `brokers` needs: each consumed one with its dead-letter topic,
    and the fetchers' heartbeats."""
    return [*_consumed(brokers), *dead_letter_topics(brokers), FETCHER_HEARTBEATS]
