"""A batch's corrections carried into the transactions and announcements (`services.ledger.rederivation`
decides): the reads and writes, inside the batch's transaction, after its new rows and before the
corrected holdings replace the stored ones.

Done when the batch is written, not when it is planned: a correction's moves read the snapshots
around the corrected one, which the batch being written while this one is planned may still be
adding. Under the account's fence nothing else writes the account meanwhile. Corrections are rare
and an account's few: ordinary statements, a handful per corrected account.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.plan import BatchPlan
from services.ledger.positions import Held, HeldLike, InstrumentKey, Positions, positions_of
from services.ledger.rederivation import (
    Link,
    ReportedTrade,
    StoredTrade,
    moves_to_redo,
    rederive,
)
from shared import topics
from shared.db.ownership import TRADE_COLUMNS
from shared.db.position_versions import price_at, superseded
from shared.db.sets import update_by_id
from shared.db.tables import (
    Base,
    BrokerAccount,
    OutboxMessage,
    PositionVersion,
    Snapshot,
    SnapshotHolding,
    SnapshotStatus,
    Transaction,
)
from shared.events import utc_now


async def rederive_corrections(session: AsyncSession, plan: BatchPlan) -> None:
    """Derive again the moves the plan's corrections touch (`BatchPlan.replaced`), and write the
    announcements of those that changed into the outbox. Those rows join the plan's outbox rows, for
    the relay to hand over, and what changed is counted in its outcomes, for the batch's log line."""
    corrected: dict[uuid.UUID, Positions] = {i: positions_of(h) for i, h in plan.replaced.items()}
    targets = await session.execute(
        select(Snapshot.account_id, BrokerAccount.portfolio_id, func.min(Snapshot.taken_at))
        .join(BrokerAccount, BrokerAccount.id == Snapshot.account_id)
        .where(Snapshot.id.in_(list(corrected)), Snapshot.status == SnapshotStatus.APPLIED)
        .group_by(Snapshot.account_id, BrokerAccount.portfolio_id)
    )
    fresh = {row[0] for row in plan.snapshots}
    now = utc_now()
    for account_id, portfolio_id, earliest in targets.all():
        chain = await _chain(session, account_id, earliest)
        moves = moves_to_redo([i for i, _ in chain], corrected.keys(), fresh=fresh)
        if not moves:
            continue
        taken = dict(chain)
        needed = {i for move in moves for i in move if i is not None}
        positions = await _positions(session, needed)
        links = {i: Link(i, taken[i], positions[i]) for i in needed}
        since = min(taken[i] for i in needed)
        rederived = rederive(
            account_id=account_id,
            portfolio_id=portfolio_id,
            moves=[(links[b] if b else None, links[a]) for b, a in moves],
            corrected=corrected,
            stored=await _derived(session, [a for _, a in moves]),
            reported=await _reported(session, account_id, since=None if moves[0][0] is None else since),
        )
        if rederived.deleted:
            await session.execute(delete(Transaction).where(Transaction.id.in_(rederived.deleted)))
        await update_by_id(session, Transaction, rederived.updated)
        await _insert(session, Transaction, BatchPlan.TRANSACTION_COLUMNS, rederived.inserted)
        rows = [
            (e.event_id, topics.HOLDINGS_CHANGES, e.key, e.model_dump_json(), now, e.snapshot_id)
            for e in rederived.announcements
        ]
        await _insert(session, OutboxMessage, BatchPlan.OUTBOX_COLUMNS, rows)
        await update_by_id(
            session,
            Snapshot,
            [{"id": e.snapshot_id, "announcement_id": e.event_id} for e in rederived.announcements],
        )
        plan.outbox += rows
        plan.outcomes["trades_rederived"] += (
            len(rederived.inserted) + len(rederived.updated) + len(rederived.deleted)
        )
        plan.outcomes["corrections_announced"] += len(rows)


async def _insert(
    session: AsyncSession, model: type[Base], names: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        await session.execute(insert(model), [dict(zip(names, row, strict=True)) for row in rows])


async def _chain(session: AsyncSession, account_id: uuid.UUID, earliest: Any) -> list[tuple[uuid.UUID, Any]]:
    """The account's applied snapshots (id, taken at), oldest first, from the one before `earliest`."""
    s = Snapshot
    applied = and_(s.account_id == account_id, s.status == SnapshotStatus.APPLIED)
    before = select(func.max(s.taken_at)).where(applied, s.taken_at < earliest).scalar_subquery()
    rows = await session.execute(
        select(s.id, s.taken_at)
        .where(applied, s.taken_at >= func.coalesce(before, earliest))
        .order_by(s.taken_at, s.id)
    )
    return [(i, t) for i, t in rows]


async def _positions(
    session: AsyncSession, snapshot_ids: Collection[uuid.UUID]
) -> Mapping[uuid.UUID, Positions]:
    """The stored positions of applied snapshots: their own holdings when they keep them, else the
    account's versions valid at their time, priced then (as the API reads a snapshot)."""
    h, v = SnapshotHolding, PositionVersion
    ids = list(snapshot_ids)
    kept = (
        select(h.snapshot_id, h.symbol, h.exchange, h.quantity, h.average_price, h.last_price)
        .add_columns(h.currency, h.isin, h.asset_type)
        .join(Snapshot, Snapshot.id == h.snapshot_id)
        .where(Snapshot.id.in_(ids), Snapshot.holdings_kept)
    )
    versioned = (
        select(Snapshot.id, v.symbol, v.exchange, v.quantity, v.average_price, price_at(Snapshot.taken_at))
        .add_columns(v.currency, v.isin, v.asset_type)
        .join(v, and_(v.account_id == Snapshot.account_id, v.valid_from <= Snapshot.taken_at))
        .where(
            Snapshot.id.in_(ids),
            ~Snapshot.holdings_kept,
            v.quantity.is_not(None),
            ~superseded(by=Snapshot.taken_at),
        )
    )
    positions: dict[uuid.UUID, dict[InstrumentKey, HeldLike]] = {i: {} for i in ids}
    for row in await session.execute(union_all(kept, versioned)):
        snapshot_id, symbol, exchange, *held = tuple(row)
        positions[snapshot_id][(symbol, exchange)] = Held._make(held)
    return positions


async def _derived(
    session: AsyncSession, snapshot_ids: list[uuid.UUID]
) -> Mapping[uuid.UUID, list[StoredTrade]]:
    t = Transaction
    rows = await session.execute(
        select(t.snapshot_id, t.id, t.symbol, t.exchange, *(getattr(t, n) for n in TRADE_COLUMNS)).where(
            t.snapshot_id.in_(snapshot_ids), t.origin == "derived"
        )
    )
    stored: defaultdict[uuid.UUID, list[StoredTrade]] = defaultdict(list)
    for snapshot_id, row_id, symbol, exchange, *terms in rows:
        stored[snapshot_id].append(StoredTrade(row_id, (symbol, exchange), tuple(terms)))
    return stored


async def _reported(session: AsyncSession, account_id: uuid.UUID, *, since: Any) -> list[ReportedTrade]:
    """The account's reported trades since `since` (all of them for None), which derivation nets out."""
    t = Transaction
    query = select(t.symbol, t.exchange, t.occurred_at, t.kind, t.quantity).where(
        t.account_id == account_id, t.origin == "reported"
    )
    if since is not None:
        query = query.where(t.occurred_at > since)
    return [
        ReportedTrade((symbol, exchange), at, quantity if kind == "buy" else -quantity)
        for symbol, exchange, at, kind, quantity in await session.execute(query)
    ]
