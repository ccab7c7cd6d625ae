"""Every Kafka topic name, declared once. Nothing else spells a topic inline."""

from __future__ import annotations

HOLDINGS_SNAPSHOTS = "holdings.snapshots"
SYNC_FAILURES = "sync.failures"
HOLDINGS_CHANGES = "holdings.changes"
_SYNC_REQUESTS_PREFIX = "sync.requests."
_DLQ_SUFFIX = ".dlq"


def sync_requests(broker: str) -> str:
    """The request topic of one broker; fetchers of that broker consume it."""
    return f"{_SYNC_REQUESTS_PREFIX}{broker.lower()}"


def dead_letters(topic: str) -> str:
    """Where a consumer of `topic` parks a message it cannot decode, with the reason."""
    return f"{topic}{_DLQ_SUFFIX}"


def all_topics(brokers: list[str]) -> list[str]:
    """The topics a deployment serving `brokers` needs, each with its dead-letter topic."""
    main = [HOLDINGS_SNAPSHOTS, SYNC_FAILURES, HOLDINGS_CHANGES] + [sync_requests(b) for b in brokers]
    return main + [dead_letters(t) for t in main]
