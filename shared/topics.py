"""Every Kafka topic name, declared once. Nothing else spells a topic inline."""

from __future__ import annotations

from dataclasses import dataclass

from shared import consumer_groups

HOLDINGS_SNAPSHOTS = "holdings.snapshots"
SYNC_FAILURES = "sync.failures"
HOLDINGS_CHANGES = "holdings.changes"  # HoldingsChanged, and AccountRemoved when an account goes
# Each account's complete current positions (CurrentHoldings), keyed by account; a tombstone when the
# account is removed. Compacted: read from the start, it is the state a subscriber bootstraps from.
HOLDINGS_CURRENT = "holdings.current"
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


COMPACTED = frozenset({FETCHER_HEARTBEATS, HOLDINGS_CURRENT})
"""Topics where only each key's latest message matters: Kafka keeps that one (cleanup.policy=compact)."""


def all_topics(brokers: list[str]) -> list[str]:
    """The topics a deployment serving `brokers` needs: each consumed one with its dead-letter topic,
    the fetchers' heartbeats, and the current holdings (read only by subscribers)."""
    return [*_consumed(brokers), *dead_letter_topics(brokers), FETCHER_HEARTBEATS, HOLDINGS_CURRENT]


BROKER = "{broker}"
"""Stands for a broker's name in the per-broker topics and groups the AsyncAPI document describes."""


@dataclass(frozen=True, kw_only=True)
class TopicUse:
    """What a topic carries and who uses it: the AsyncAPI document (`shared.asyncapi`) says it to
    subscribers. Every topic of `all_topics` but the dead-letter ones (described from their source)
    needs one here."""

    summary: str
    messages: tuple[str, ...]  # payload model names: an event of shared.events, or as named in USES below
    producers: tuple[str, ...]  # services that publish
    groups: tuple[str, ...] = ()  # consumer groups of this project that consume (shared.consumer_groups)
    readers: tuple[str, ...] = ()  # services that read without a group
    key: str = "account_id"


USES: dict[str, TopicUse] = {
    sync_requests(BROKER): TopicUse(
        summary="Requests to sync one account of a broker; that broker's fetchers consume them.",
        messages=("SyncRequested",),
        producers=("scheduler", "api"),
        groups=(consumer_groups.fetcher(BROKER),),
    ),
    sync_request_retries(BROKER): TopicUse(
        summary="Requests a fetcher puts off to try again at `not_before`, so one failing account "
        "blocks no other.",
        messages=("SyncRequested",),
        producers=("fetcher",),
        groups=(consumer_groups.fetcher_retries(BROKER),),
    ),
    HOLDINGS_SNAPSHOTS: TopicUse(
        summary="Everything an account held, as its broker (or an uploaded statement) reported it.",
        messages=("HoldingSnapshot",),
        producers=("fetcher", "api"),
        groups=(consumer_groups.LEDGER,),
    ),
    SYNC_FAILURES: TopicUse(
        summary="Syncs that produced no snapshot, and why.",
        messages=("SyncFailed",),
        producers=("fetcher",),
        groups=(consumer_groups.LEDGER, consumer_groups.WEBHOOKS),
    ),
    HOLDINGS_CHANGES: TopicUse(
        summary="The ledger's committed changes of an account's positions, and the account's removal: "
        "what other services subscribe to.",
        messages=("HoldingsChanged", "AccountRemoved"),
        producers=("ledger", "api"),
        groups=(consumer_groups.WEBHOOKS,),
    ),
    HOLDINGS_CURRENT: TopicUse(
        summary="Each account's complete current positions, written by the ledger with each change "
        "(compacted: the latest per account), and a tombstone (empty value) when the account is "
        "removed: read it from the start to bootstrap, then follow holdings.changes.",
        messages=("CurrentHoldings",),
        producers=("ledger", "api"),
    ),
    SNAPSHOT_REVIEWS: TopicUse(
        summary="An owner's decisions on held (suspicious) snapshots, for the ledger to apply.",
        messages=("SnapshotAccepted", "SnapshotDismissed"),
        producers=("api",),
        groups=(consumer_groups.LEDGER,),
    ),
    FETCHER_HEARTBEATS: TopicUse(
        summary="Each fetcher process's latest heartbeat; a clean stop leaves a tombstone (empty value).",
        messages=("FetcherHeartbeat",),
        producers=("fetcher",),
        readers=("api",),
        key="fetcher_id",
    ),
}
