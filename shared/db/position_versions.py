"""The two questions every read of position versions asks, for the ledger (an account's current
positions) and the API (the positions valid at a snapshot's time) alike: is this version (rows of
`PositionVersion`) superseded, and what was its instrument's price at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Exists, ScalarSelect, select
from sqlalchemy.orm import QueryableAttribute, aliased

from shared.db.tables import InstrumentPrice, PositionVersion


def price_at(moment: ColumnElement[Any] | QueryableAttribute[Any]) -> ScalarSelect[Any]:
    """The newest price of the version's instrument at or before `moment`."""
    v, p = PositionVersion, InstrumentPrice
    return (
        select(p.price)
        .where(p.symbol == v.symbol, p.exchange == v.exchange, p.at <= moment)
        .order_by(p.at.desc(), p.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def superseded(*, by: ColumnElement[Any] | QueryableAttribute[Any] | None = None) -> Exists:
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
