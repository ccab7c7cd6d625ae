"""Operators: what the bus knows — fetchers alive, consumer lag, dead letters and their replay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Annotated, TypeVar

from fastapi import HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.api.deps import ApiSettings, Bus, Context, Session
from services.api.errors import unavailable
from services.api.input_types import NO_CONTROL_CHARACTERS, Timestamp
from services.api.operators import operator_router
from services.api.routes import error_responses
from services.api.schemas_admin import (
    DeadLetterOut,
    DeadLettersOut,
    DeadLetterTopicOut,
    FetcherOut,
    FetchersOut,
    LagOut,
    LagReport,
    ReplayOut,
)
from shared import consumer_groups, topics
from shared.bus.port import BusUnavailable
from shared.dead_letter_replay import (
    read_dead_letters,
    redacted,
    replay_dead_letters,
    replayed_positions,
)
from shared.events import utc_now
from shared.fetcher_heartbeats import latest_heartbeats

router = operator_router()

# How long a read of the bus may take before the answer is a 503 (a missing topic can stall a client).
BUS_READ_TIMEOUT_S = 15.0
# Heartbeats read per partition: every fetcher beating for a few minutes, many times over.
HEARTBEATS_PER_PARTITION = 2000

T = TypeVar("T")


async def _from_bus(what: str, read: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(read, BUS_READ_TIMEOUT_S)
    except (BusUnavailable, TimeoutError):
        raise unavailable(f"the message bus did not answer ({what}): try again") from None


def _fetched(context: Context) -> list[str]:
    return sorted(code for code, t in context.broker_types.items() if t.fetched)


@router.get("/fetchers", summary="Fetcher processes, alive and gone", responses=error_responses(503))
async def list_fetchers(bus: Bus, settings: ApiSettings) -> FetchersOut:
    """Each fetcher's latest heartbeat. One that stopped cleanly is not listed; one whose last
    heartbeat is older than FETCHER_GONE_AFTER_SECONDS (killed, hung, cut off) is listed with
    `alive: false`."""
    records = await _from_bus(
        "heartbeats", bus.recent(topics.FETCHER_HEARTBEATS, per_partition=HEARTBEATS_PER_PARTITION)
    )
    cutoff = utc_now() - timedelta(seconds=settings.fetcher_gone_after_seconds)
    return FetchersOut(
        items=[
            FetcherOut(
                fetcher_id=h.fetcher_id,
                broker=h.broker,
                host=h.host,
                pid=h.pid,
                started_at=h.started_at,
                last_seen_at=h.sent_at,
                in_flight=h.in_flight,
                handled=h.handled,
                alive=h.sent_at >= cutoff,
            )
            for h in latest_heartbeats(records)
        ]
    )


@router.get("/lag", summary="Consumer lag per group and partition", responses=error_responses(503))
async def consumer_lag(bus: Bus, context: Context) -> LagReport:
    """For the ledger's and every fetcher's groups: per partition, the committed offset, the log end
    and the difference (records not yet processed)."""
    rows = await _from_bus("consumer offsets", bus.lag(consumer_groups.all_groups(_fetched(context))))
    items = [
        LagOut(
            group=r.group, topic=r.topic, partition=r.partition, committed=r.committed, end=r.end, lag=r.lag
        )
        for r in rows
    ]
    return LagReport(items=items, total=sum(i.lag for i in items))


DlqTopic = Annotated[str, StringConstraints(min_length=1, max_length=255), NO_CONTROL_CHARACTERS]


def _known_dlq(context: Context, topic: str) -> str:
    if topic not in topics.dead_letter_topics(_fetched(context)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead-letter topic in this deployment")
    return topic


@router.get(
    "/dead-letters",
    summary="Dead-letter topics and their newest messages",
    responses=error_responses(404, 503),
)
async def list_dead_letters(
    bus: Bus,
    session: Session,
    context: Context,
    topic: Annotated[
        DlqTopic | None, Query(description="Only this dead-letter topic (`<topic>.dlq`).")
    ] = None,
    newest: Annotated[
        int, Query(ge=1, le=100, description="How many of the newest messages per topic.")
    ] = 10,
) -> DeadLettersOut:
    """Per `.dlq` topic, how many messages it holds and the newest few: why each failed, where it
    came from, when, and whether it was replayed. Never the message itself (it may carry
    credentials' ciphertext); anything shaped like a token in a reason is redacted."""
    chosen = (
        [_known_dlq(context, topic)] if topic is not None else topics.dead_letter_topics(_fetched(context))
    )
    items: list[DeadLetterTopicOut] = []
    for name in chosen:
        count = await _from_bus("dead-letter counts", bus.count(name))
        letters = read_dead_letters(
            await _from_bus("dead letters", bus.recent(name, per_partition=newest)) if count else [], name
        )
        replayed = await replayed_positions(session, name) if letters else set()
        newest_first = sorted(letters, key=lambda d: d.letter.failed_at, reverse=True)[:newest]
        items.append(
            DeadLetterTopicOut(
                topic=name,
                count=count,
                newest=[
                    DeadLetterOut(
                        partition=d.record.partition,
                        offset=d.record.offset,
                        source_topic=d.letter.source_topic,
                        key=d.letter.key,
                        reason=redacted(d.letter.error),
                        consumer_group=d.letter.consumer_group,
                        failed_at=d.letter.failed_at,
                        replayed=(d.record.partition, d.record.offset) in replayed,
                    )
                    for d in newest_first
                ],
            )
        )
    return DeadLettersOut(items=items)


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: DlqTopic = Field(description="The dead-letter topic to replay, e.g. `holdings.snapshots.dlq`.")
    since: Timestamp | None = Field(default=None, description="Only messages dead-lettered at or after this.")


@router.post(
    "/dead-letters/replay",
    summary="Put dead letters back on their topic, once",
    responses=error_responses(404, 503),
)
async def replay(body: ReplayRequest, bus: Bus, context: Context) -> ReplayOut:
    """Publish each dead letter of `topic` not replayed before back to its original topic, oldest
    first. A dead letter is replayed once: a second replay skips it. Use after fixing what made
    them fail; those that fail again come back to the dead-letter topic as new messages."""
    name = _known_dlq(context, body.topic)
    try:
        report = await asyncio.wait_for(
            replay_dead_letters(context.sessions, bus, name, since=body.since), BUS_READ_TIMEOUT_S * 4
        )
    except (BusUnavailable, TimeoutError):
        raise unavailable(
            "the replay stopped: the message bus did not answer (what was replayed stays so)"
        ) from None
    return ReplayOut(
        replayed=report.replayed,
        already_replayed=report.already_replayed,
        skipped_before_since=report.skipped_before_since,
    )
