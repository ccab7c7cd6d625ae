"""Reading dead letters for operators, and putting them back on their original topic once.

Each replayed dead letter gets a row in `dead_letter_replays` (its DLQ topic, partition, offset),
inserted in the transaction that is committed only after the original message is acknowledged by
the bus. So:
- a dead letter whose row exists is never published again, by any later or concurrent replay (the
  primary key; on Postgres a concurrent insert waits for the first and then fails);
- a failed publish leaves no row: that dead letter is replayed by the next run;
- the one window is a crash after the bus acknowledged and before the commit: the next replay
  publishes it again. The replayed message is the original bytes, with its original `event_id`, so
  consumers that dedupe on it (the ledger) apply it once even then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import topics
from shared.bus.dead_letters import DeadLetter
from shared.bus.port import MessageBus, OutgoingMessage, Record
from shared.db.tables import DeadLetterReplay

# The most records read per partition of a DLQ topic in one replay or listing.
MAX_READ_PER_PARTITION = 10_000
_FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-=]{20,}")


def redacted(text: str) -> str:
    """`text` without anything shaped like a Fernet token (credentials' ciphertext)."""
    return _FERNET_TOKEN.sub("[redacted]", text)


@dataclass(frozen=True)
class ReadDeadLetter:
    record: Record
    letter: DeadLetter


def read_dead_letters(records: list[Record], dlq_topic: str) -> list[ReadDeadLetter]:
    """The records that are dead letters of `dlq_topic`'s own original topic, oldest first. One
    naming another topic is skipped: a replay must not write where the DLQ's topic does not say."""
    source = dlq_topic.removesuffix(".dlq")
    found: list[ReadDeadLetter] = []
    for record in records:
        try:
            letter = DeadLetter.model_validate_json(record.value)
        except ValidationError:
            continue
        if letter.source_topic == source:
            found.append(ReadDeadLetter(record, letter))
    return sorted(found, key=lambda d: (d.letter.failed_at, d.record.partition, d.record.offset))


@dataclass(frozen=True)
class ReplayReport:
    replayed: int
    already_replayed: int
    skipped_before_since: int


class NotADeadLetterTopic(ValueError):
    pass


async def replay_dead_letters(
    sessions: async_sessionmaker[AsyncSession],
    bus: MessageBus,
    dlq_topic: str,
    *,
    since: datetime | None = None,
) -> ReplayReport:
    """Publish every dead letter of `dlq_topic` (failed at or after `since`) not yet replayed back
    to its original topic, one at a time, oldest first. BusUnavailable stops it: what was replayed
    is recorded, the rest waits for the next run."""
    if not topics.is_dead_letters(dlq_topic):
        raise NotADeadLetterTopic(f"{dlq_topic!r} is not a dead-letter topic (they end in .dlq)")
    letters = read_dead_letters(await bus.recent(dlq_topic, per_partition=MAX_READ_PER_PARTITION), dlq_topic)
    replayed = already = before = 0
    for dead in letters:
        if since is not None and dead.letter.failed_at < since:
            before += 1
            continue
        async with sessions() as session:
            key = (dlq_topic, dead.record.partition, dead.record.offset)
            if await session.get(DeadLetterReplay, key) is not None:
                already += 1
                continue
            session.add(DeadLetterReplay(dlq_topic=key[0], partition=key[1], offset=key[2]))
            try:
                await session.flush()
            except IntegrityError:  # a concurrent replay took it
                already += 1
                continue
            await bus.publish(
                [
                    OutgoingMessage(
                        dead.letter.source_topic, dead.letter.key or "", dead.letter.original_value()
                    )
                ]
            )
            await session.commit()
            replayed += 1
    return ReplayReport(replayed=replayed, already_replayed=already, skipped_before_since=before)


async def replayed_positions(session: AsyncSession, dlq_topic: str) -> set[tuple[int, int]]:
    rows = await session.execute(
        select(DeadLetterReplay.partition, DeadLetterReplay.offset).where(
            DeadLetterReplay.dlq_topic == dlq_topic
        )
    )
    return {(partition, offset) for partition, offset in rows}
