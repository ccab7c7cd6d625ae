"""What a replay's correction changes downstream of the holdings: the transactions derived from the
corrected snapshot and from the applied snapshot after it, and their announcements. Pure: the
chain is read and the rows are written by `services.ledger.correction_store`.

A snapshot's derived transactions explain the move from the applied snapshot before it; correcting
snapshot S moves both ends of two such moves (S's own, and the next one's). Each is derived again,
from the corrected positions, only when the correction changes what it derives: a fix of a field
no trade reads (an ISIN) leaves every row as it was. Rows are matched by instrument, one derived
trade per instrument and snapshot: a trade that is the same keeps its row, one that changed keeps
its id with new values, one that is gone is deleted.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.ledger.positions import (
    ZERO,
    DerivedTrade,
    InstrumentKey,
    Positions,
    derive_trades,
    position_changes,
)
from shared.db.ownership import TRADE_COLUMNS
from shared.events import HoldingsChanged


@dataclass(frozen=True)
class Link:
    """An applied snapshot of the account, with its positions as stored before the correction."""

    snapshot_id: uuid.UUID
    taken_at: datetime
    positions: Positions


@dataclass(frozen=True)
class StoredTrade:
    """A derived transaction as stored: its row's id, instrument and `TRADE_COLUMNS`."""

    id: uuid.UUID
    key: InstrumentKey
    terms: tuple[Any, ...]


@dataclass(frozen=True)
class ReportedTrade:
    """A trade the broker reported, as stored: derivation nets these out of a move."""

    key: InstrumentKey
    occurred_at: datetime
    signed_quantity: Decimal  # buys positive


@dataclass
class Rederived:
    """The rows one account's corrections change."""

    inserted: list[tuple[Any, ...]] = field(default_factory=list)  # `BatchPlan.TRANSACTION_COLUMNS`
    updated: list[dict[str, Any]] = field(default_factory=list)  # id and `TRADE_COLUMNS`
    deleted: list[uuid.UUID] = field(default_factory=list)  # transaction ids
    announcements: list[HoldingsChanged] = field(default_factory=list)


def moves_to_redo(
    chain: Sequence[uuid.UUID], corrected: Collection[uuid.UUID], *, fresh: Collection[uuid.UUID] = ()
) -> list[tuple[uuid.UUID | None, uuid.UUID]]:
    """The moves (snapshot before, or None for the first; snapshot after) of `chain`, an account's
    applied snapshots oldest first, that the corrections of `corrected` touch: into each corrected
    snapshot, and out of it into the next. `fresh`: snapshots the batch itself adds, derived from
    the corrected positions already when the correction came first in it (see docs/architecture.md)."""
    wanted = set()
    for index, snapshot_id in enumerate(chain):
        if snapshot_id in corrected:
            wanted.add(index)
            if index + 1 < len(chain) and chain[index + 1] not in fresh:
                wanted.add(index + 1)
    return [(chain[i - 1] if i > 0 else None, chain[i]) for i in sorted(wanted)]


def rederive(
    *,
    account_id: uuid.UUID,
    portfolio_id: uuid.UUID,
    moves: Sequence[tuple[Link | None, Link]],
    corrected: Mapping[uuid.UUID, Positions],
    stored: Mapping[uuid.UUID, Sequence[StoredTrade]],
    reported: Sequence[ReportedTrade],
) -> Rederived:
    """The rows that derive each move again from the corrected positions, and its announcement when
    what it changed is not what was announced. `stored`: each snapshot's derived rows."""
    out = Rederived()
    for before, link in moves:
        old_before: Positions = before.positions if before else {}
        new_before = corrected.get(before.snapshot_id, old_before) if before else old_before
        new_after = corrected.get(link.snapshot_id, link.positions)
        net = _net(reported, before.taken_at if before else None, link.taken_at)
        new_trades = derive_trades(new_before, new_after, reported=net)
        if new_trades != derive_trades(old_before, link.positions, reported=net):
            _replace_trades(out, account_id, link, new_trades, stored.get(link.snapshot_id, ()))
        changes = position_changes(new_before, new_after)
        if changes != position_changes(old_before, link.positions):
            out.announcements.append(
                HoldingsChanged(
                    account_id=account_id,
                    portfolio_id=portfolio_id,
                    snapshot_id=link.snapshot_id,
                    taken_at=link.taken_at,
                    changes=tuple(changes),
                    correction=True,
                )
            )
    return out


def _net(
    reported: Sequence[ReportedTrade], since: datetime | None, until: datetime
) -> dict[InstrumentKey, Decimal]:
    """Signed quantity of the reported trades made in (since, until], as the ledger nets them."""
    net: defaultdict[InstrumentKey, Decimal] = defaultdict(lambda: ZERO)
    for trade in reported:
        if (since is None or trade.occurred_at > since) and trade.occurred_at <= until:
            net[trade.key] += trade.signed_quantity
    return dict(net)


def _replace_trades(
    out: Rederived,
    account_id: uuid.UUID,
    link: Link,
    trades: list[DerivedTrade],
    stored: Sequence[StoredTrade],
) -> None:
    rows = {trade.key: (trade.id, trade.terms) for trade in stored}
    for trade in trades:
        terms = _terms(trade)
        kept = rows.pop(trade.key, None)
        if kept is None:
            out.inserted.append(
                (account_id, *trade.key, *terms, link.taken_at, "derived", link.snapshot_id, None)
            )
        elif kept[1] != terms:
            out.updated.append({"id": kept[0], **dict(zip(TRADE_COLUMNS, terms, strict=True))})
    out.deleted += [row_id for row_id, _ in rows.values()]


def _terms(trade: DerivedTrade) -> tuple[Any, ...]:
    source = trade.price_source.value if trade.price_source else None
    return (trade.kind.value, trade.quantity, trade.price, source, trade.currency)
