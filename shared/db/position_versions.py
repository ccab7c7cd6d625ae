"""The two questions every read of position versions asks, for the ledger (an account's current
positions) and the API (the positions valid at a snapshot's time) alike: what was an instrument's
price at a time, and (the ledger's) is this version (rows of `PositionVersion`) superseded (by a
version valid at a given time, for a past snapshot's positions)."""

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


def superseded(*, by: Column | None = None) -> Exists:
    """A newer version of the same position exists (valid from `by` at the latest, if given)."""
    v, newer = PositionVersion, aliased(PositionVersion)
    conditions = [
        newer.account_id == v.account_id,
        newer.symbol == v.symbol,
        newer.exchange == v.exchange,
        newer.valid_from > v.valid_from,
    ]
    if by is not None:
        conditions.append(newer.valid_from <= by)
    return select(newer.valid_from).where(*conditions).exists()
