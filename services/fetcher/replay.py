"""`portfolio-sync replay`: an account's archived broker answers parsed again with today's adapters,
and the holdings sent to the ledger as corrections of the snapshots they became, without asking
the broker anything.

A correction is a `HoldingSnapshot` on `holdings.snapshots` naming the stored snapshot it replaces
(`replaces`), keyed by the account like every snapshot, so the ledger applies it on its one path,
in order with the account's syncs. Its event id is derived from that snapshot and the holdings, so
replaying the same answers with the same adapter again sends the same ids, which the ledger skips;
a later fix sends new ids, applied again.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from services.fetcher.adapter import BrokerAdapter, BrokerError
from services.fetcher.archive import ArchivedAnswer
from services.fetcher.main import opened_archive
from services.fetcher.registry import create_adapter
from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.events import Holding, HoldingSnapshot
from shared.runtime import started_bus
from shared.settings import Settings

_REPLAY_NAMESPACE = uuid.UUID("5c0b7a52-2f7e-4f0e-9d0a-1f6f3c2b8e41")
_HOLDINGS = TypeAdapter(list[Holding])
REPLAYER_ID = "replay"


@dataclass
class ReplayReport:
    answers: int = 0  # archived answers read
    corrections: int = 0  # sent to the ledger
    never_parsed: int = 0  # answers that became no snapshot when they came: nothing to correct
    failing: list[str] = field(default_factory=list)  # answers today's adapter cannot parse either

    def summary(self) -> str:
        return (
            f"{self.answers} archived answers: {self.corrections} sent to the ledger as corrections, "
            f"{self.never_parsed} never became a snapshot, {len(self.failing)} still fail to parse"
        )


def correction_id(snapshot_id: uuid.UUID, holdings: Sequence[Holding]) -> uuid.UUID:
    digest = hashlib.sha256(_HOLDINGS.dump_json(list(holdings))).hexdigest()
    return uuid.uuid5(_REPLAY_NAMESPACE, f"{snapshot_id}/{digest}")


async def replay_answers(
    answers: Sequence[ArchivedAnswer], adapters: Mapping[str, BrokerAdapter], bus: MessageBus
) -> ReplayReport:
    """Parse each answer with its broker's adapter and publish the corrections, oldest first."""
    report = ReplayReport(answers=len(answers))
    corrections = []
    for answer in answers:
        if answer.snapshot_id is None:
            report.never_parsed += 1
            continue
        try:
            holdings = adapters[answer.broker].parse_holdings(answer.answer())
        except (BrokerError, ValidationError) as exc:
            report.failing.append(f"run {answer.run_id} attempt {answer.attempt}: {exc}")
            continue
        correction = HoldingSnapshot(
            event_id=correction_id(answer.snapshot_id, holdings),
            account_id=answer.account_id,
            request_id=answer.run_id,
            broker=answer.broker,
            taken_at=answer.received_at,
            holdings=tuple(holdings),
            attempt=answer.attempt,
            fetcher_id=REPLAYER_ID,
            replaces=answer.snapshot_id,
        )
        corrections.append(OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, correction))
    await bus.publish(corrections)
    report.corrections = len(corrections)
    return report


async def run_replay(settings: Settings, account_id: uuid.UUID, *, since: datetime | None) -> int:
    """The command: 0 when every answer was replayed, 1 when some still fail, 2 with no archive."""
    async with opened_archive(settings) as archive:
        if archive is None:
            print("portfolio-sync replay: RAW_ARCHIVE is none: no answers to replay", file=sys.stderr)
            return 2
        answers = await archive.answers_of(account_id, since=since)
    adapters = {broker: create_adapter(broker, settings)[0] for broker in {a.broker for a in answers}}
    try:
        async with started_bus(settings, client_id=REPLAYER_ID) as bus:
            report = await replay_answers(answers, adapters, bus)
    finally:
        for adapter in adapters.values():
            await adapter.aclose()
    for failure in report.failing:
        print(f"still fails: {failure}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failing else 0
