"""The two questions every read of position versions asks, for the ledger (an account's current
positions) and the API (the positions valid at a snapshot's time) alike: what was an instrument's
price at a time, and (the ledger's) is this version (rows of `PositionVersion`) superseded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Exists, ScalarSelect, select
from sqlalchemy.orm import QueryableAttribute, aliased

from shared.db.tables import InstrumentPrice, PositionVersion

Column = ColumnElement[Any] | QueryableAttribute[Any]


def price_at(
    moment: Column, *, symbol: Column = PositionVersion.symbol, exchange: Column = PositionVersion.exchange
) -> ScalarSelect[Any]:
    """The newest price of the instrument (the version's, unless given) at or before `moment`: the
    first entry of a backward scan of the instrument's price index."""
    p = InstrumentPrice
    return (
        select(p.price)
        .where(p.symbol == symbol, p.exchange == exchange, p.at <= moment)
        .order_by(p.at.desc(), p.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def superseded() -> Exists:
    """A newer version of the same position exists."""
    v, newer = PositionVersion, aliased(PositionVersion)
    return (
        select(newer.valid_from)
        .where(
            newer.account_id == v.account_id,
            newer.symbol == v.symbol,
            newer.exchange == v.exchange,
            newer.valid_from > v.valid_from,
        )
        .exists()
    )
