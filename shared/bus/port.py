"""What services need from a message bus, and nothing more.

Semantics both adapters guarantee (and `tests/contract/test_bus_contract.py` proves):
- records with the same key land in the same partition and are delivered in publish order;
- subscriptions sharing a group split the partitions between them; each record goes to one of them;
- `commit(records)` marks those records, and everything before them in their partitions, as done;
  what a subscription fetched but did not commit before it closed or died is delivered again to
  whoever gets the partition next (at least once). A consumer may fetch batch N+1 before it commits
  batch N: committing N leaves N+1 to be delivered again should the consumer die.
- a message with an empty value is a tombstone (Kafka's null value, what compaction deletes a key
  by); it is read back as an empty value.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from shared.events import Event


class BusUnavailable(ConnectionError):
    """The bus did not accept or deliver in time; waiting and retrying is the remedy."""


class PartitionsRevoked(Exception):
    """A commit came too late: the group rebalanced and the records' partitions went to another
    member, which will be delivered them again. Nothing is lost; what was worked out for them is void."""


@dataclass(frozen=True, slots=True)
class Record:
    """One message as it came off the bus."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    published_at: float | None = None
    """The record's time (Unix seconds; Kafka's CreateTime): when it was sent, or the time its
    publisher gave it (`OutgoingMessage.timestamp`); None where the bus does not say."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far one consumer group is behind on one partition: `end` - `committed`."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


class OutgoingMessage(NamedTuple):
    """`timestamp`: the record's time on the topic (Kafka's CreateTime); None: when it is published.
    A publisher that sets it can find the record again by time (`MessageBus.published_since`).
    A named tuple: the outbox relay makes two for every snapshot the ledger applies, and a frozen
    dataclass took twice as long to make (1.6 against 0.8 µs)."""

    topic: str
    key: str
    value: bytes
    timestamp: datetime | None = None

    @classmethod
    def of(cls, topic: str, event: Event) -> OutgoingMessage:
        """The message carrying `event`, keyed by its account."""
        return cls(topic, event.key, event.to_bytes())


class AssignmentListener(Protocol):
    """Told of each rebalance of a subscription's group: first what this member gives up, then what
    it holds afterwards (Kafka's eager protocol: every member gives up all before any is assigned)."""

    def revoked(self, partitions: frozenset[tuple[str, int]]) -> None: ...

    def assigned(self, partitions: frozenset[tuple[str, int]], partition_counts: Mapping[str, int]) -> None:
        """`partition_counts`: how many partitions each subscribed topic has, held or not."""


class Subscription(Protocol):
    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Record]:
        """Wait up to `timeout_s` for records; return at most `max_records` (possibly none)."""

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark `records`, and what came before them in their partitions, as processed. Partitions
        this member no longer holds are left to their new owner, which gets those records again."""

    def assignment(self) -> frozenset[tuple[str, int]]:
        """The (topic, partition) pairs this member holds now; empty until it has joined."""

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per partition held: records in the log beyond what this member has fetched, as far as it
        knows without asking the broker (a partition it knows no log end of yet is left out)."""

    async def close(self) -> None:
        """Leave the group; uncommitted records are redelivered to the remaining members."""


class MessageBus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish and return only once every message is durably accepted; else raise BusUnavailable."""

    async def subscribe(
        self, topics: Sequence[str], *, group: str, listener: AssignmentListener | None = None
    ) -> Subscription:
        """Join consumer group `group` on `topics`, starting at the group's committed offsets;
        `listener` is told of every rebalance."""

    async def recent(self, topic: str, *, per_partition: int) -> list[Record]:
        """The last `per_partition` records of each partition of `topic`, outside any group."""

    def published_since(self, topic: str, since: datetime) -> AsyncGenerator[list[Record], None]:
        """Every record of `topic` whose timestamp is `since` or later (and possibly some earlier
        ones: a partition is read from its first record at or after `since` to the end it had when
        asked), outside any group, a chunk at a time. Whatever a publish that returned had sent is
        among them."""

    async def count(self, topic: str) -> int:
        """How many records `topic` holds now (over its partitions: log end minus log start)."""

    async def lag(self, groups: Sequence[str]) -> list[PartitionLag]:
        """Per partition each of `groups` has committed an offset on: that offset and the log end.
        A group that has committed nothing (or does not exist) has no rows."""
