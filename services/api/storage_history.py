"""Holdings of snapshots, wherever they are kept: a snapshot's own rows (late, held and corrected
ones, and those stored before versions), or else its account's position versions valid at its time,
priced from each instrument's price series. One statement either way."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Row, and_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.position_versions import price_at, superseded
from shared.db.tables import BrokerAccount, PositionVersion, Snapshot, SnapshotHolding


async def holdings_of(
    session: AsyncSession, chosen: ColumnElement[bool], accounts: ColumnElement[bool]
) -> list[Row[Any]]:
    """The holdings of the snapshot `chosen` picks for each account of `accounts` (a condition on
    `Snapshot` and `BrokerAccount`), with the account (`account_id`) and the snapshot's time
    (`taken_at`), ordered by symbol, exchange, currency and account."""
    h = SnapshotHolding
    kept = (
        select(BrokerAccount.id.label("account_id"), h.symbol, h.exchange, h.isin, h.currency, h.asset_type)
        .add_columns(h.quantity, h.average_price, h.last_price, Snapshot.taken_at)
        .select_from(BrokerAccount)
        .join(Snapshot, chosen)
        .join(h, h.snapshot_id == Snapshot.id)
        .where(accounts, Snapshot.holdings_kept)
    )
    v = PositionVersion
    price = price_at(Snapshot.taken_at)
    versioned = (
        select(BrokerAccount.id, v.symbol, v.exchange, v.isin, v.currency, v.asset_type)
        .add_columns(v.quantity, v.average_price, price, Snapshot.taken_at)
        .select_from(BrokerAccount)
        .join(Snapshot, chosen)
        .join(v, and_(v.account_id == BrokerAccount.id, v.valid_from <= Snapshot.taken_at))
        .where(accounts, ~Snapshot.holdings_kept, v.quantity.is_not(None), ~superseded(by=Snapshot.taken_at))
    )
    both = union_all(kept, versioned).subquery()
    ordered = select(both).order_by(both.c.symbol, both.c.exchange, both.c.currency, both.c.account_id)
    return list((await session.execute(ordered)).all())
