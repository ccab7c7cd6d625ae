"""Holdings of snapshots, wherever they are kept: a snapshot's own rows (late, held and corrected
ones, and those stored before versions), or else its account's position versions valid at its time,
priced from each instrument's price series. One statement either way.

The statement picks the snapshots once (a CTE both branches read), takes each picked snapshot's
newest version of each instrument with a window over the account's versions up to its time (one
index range read per snapshot, not one probe per version for a newer one), and prices each position
with one backward probe of the instrument's price index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.position_versions import price_at
from shared.db.tables import BrokerAccount, PositionVersion, Snapshot, SnapshotHolding


async def holdings_of(
    session: AsyncSession, chosen: ColumnElement[bool], accounts: ColumnElement[bool]
) -> Sequence[Row[*tuple[Any, ...]]]:
    """The holdings of the snapshot `chosen` picks for each account of `accounts` (a condition on
    `Snapshot` and `BrokerAccount`), with the account (`account_id`) and the snapshot's time
    (`taken_at`), ordered by symbol, exchange, currency and account. The columns are in the order
    of `consolidation.Position`'s fields (account_id, symbol, exchange, isin, currency, asset_type,
    quantity, average_price, last_price, taken_at)."""
    picked = (
        select(BrokerAccount.id.label("account_id"), Snapshot.id, Snapshot.taken_at, Snapshot.holdings_kept)
        .select_from(BrokerAccount)
        .join(Snapshot, chosen)
        .where(accounts)
        .cte("picked")
    )
    h = SnapshotHolding
    kept = (
        select(picked.c.account_id, h.symbol, h.exchange, h.isin, h.currency, h.asset_type)
        .add_columns(h.quantity, h.average_price, h.last_price, picked.c.taken_at)
        .join(h, h.snapshot_id == picked.c.id)
        .where(picked.c.holdings_kept)
    )
    v = PositionVersion
    newest_first = func.row_number().over(
        partition_by=(picked.c.id, v.symbol, v.exchange), order_by=v.valid_from.desc()
    )
    ranked = (
        select(picked.c.account_id, v.symbol, v.exchange, v.isin, v.currency, v.asset_type)
        .add_columns(v.quantity, v.average_price, picked.c.taken_at, newest_first.label("rank"))
        .join(v, and_(v.account_id == picked.c.account_id, v.valid_from <= picked.c.taken_at))
        .where(~picked.c.holdings_kept)
        .subquery("ranked")
    )
    r = ranked.c
    price = price_at(r.taken_at, symbol=r.symbol, exchange=r.exchange)
    versioned = (
        select(r.account_id, r.symbol, r.exchange, r.isin, r.currency, r.asset_type)
        .add_columns(r.quantity, r.average_price, price, r.taken_at)
        .where(r.rank == 1, r.quantity.is_not(None))
    )
    both = union_all(kept, versioned).subquery()
    ordered = select(both).order_by(both.c.symbol, both.c.exchange, both.c.currency, both.c.account_id)
    return (await session.execute(ordered)).all()
