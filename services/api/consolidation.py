"""The consolidated view of a portfolio: its accounts' positions, one line per instrument.

Named tuples rather than dataclasses: a portfolio read builds a few hundred of them per request,
and a tuple is built several times faster than a frozen dataclass."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import NamedTuple

from shared.numeric import EXACT

# Prices are stored with 8 decimal places; a derived average keeps the same scale.
PRICE_PLACES = 8
_ZERO = Decimal(0)


class Position(NamedTuple):
    """One instrument held by one account, as of its snapshot."""

    account_id: uuid.UUID
    symbol: str
    exchange: str
    isin: str | None
    currency: str
    asset_type: str
    quantity: Decimal
    average_price: Decimal
    last_price: Decimal | None
    as_of: datetime


class AccountShare(NamedTuple):
    account_id: uuid.UUID
    quantity: Decimal
    average_price: Decimal
    as_of: datetime


class ConsolidatedHolding(NamedTuple):
    symbol: str
    exchange: str
    currency: str
    isin: str | None
    asset_type: str
    quantity: Decimal
    average_price: Decimal | None
    last_price: Decimal | None
    market_value: Decimal | None
    accounts: tuple[AccountShare, ...]


def market_value(quantity: Decimal, last_price: Decimal | None) -> Decimal | None:
    return None if last_price is None else EXACT.multiply(quantity, last_price)


def consolidate(positions: Iterable[Position]) -> list[ConsolidatedHolding]:
    """Group by (symbol, exchange, currency): the same instrument in another currency is another line.
    Sums and products are exact (shared.numeric.EXACT), as Postgres's are: the fast reads build the
    same lines in Postgres (holdings_json_sql.py)."""
    groups: dict[tuple[str, str, str], list[Position]] = {}
    for position in positions:
        key = (position.symbol, position.exchange, position.currency)
        group = groups.get(key)
        if group is None:
            groups[key] = [position]
        else:
            group.append(position)
    with localcontext(EXACT):
        return [_holding(key, groups[key]) for key in sorted(groups)]


def _holding(key: tuple[str, str, str], group: list[Position]) -> ConsolidatedHolding:
    """One pass over the group: its sums, its freshest quote and its first ISIN."""
    symbol, exchange, currency = key
    quantity = weight = cost = _ZERO
    isin: str | None = None
    quoted: Position | None = None
    for p in group:
        quantity += p.quantity
        size = abs(p.quantity)
        weight += size
        cost += size * p.average_price
        if isin is None and p.isin:
            isin = p.isin
        # The freshest quote wins: accounts synced at different times may report different prices
        # (the first of equally fresh ones, as max() would pick).
        if p.last_price is not None and (quoted is None or p.as_of > quoted.as_of):
            quoted = p
    last_price = None if quoted is None else quoted.last_price
    # Average cost weighted by absolute size, so a short in one account cannot flip its sign.
    average_price = rounded_quotient(cost, weight, PRICE_PLACES) if weight else None
    asset_type = group[0].asset_type  # the first listed, before the shares are put in account order
    if len(group) > 1:
        group = sorted(group, key=_by_account)
    return ConsolidatedHolding(
        symbol,
        exchange,
        currency,
        isin,
        asset_type,
        quantity,
        average_price,
        last_price,
        market_value(quantity, last_price),
        tuple(AccountShare(p.account_id, p.quantity, p.average_price, p.as_of) for p in group),
    )


def rounded_quotient(numerator: Decimal, denominator: Decimal, places: int) -> Decimal:
    """`numerator / denominator` rounded half-even to `places` decimal places from the exact
    quotient (a Fraction; `round` of one rounds half to even), not from one first rounded to a
    context's precision (as `(a / b).quantize(..)` would), with exponent `-places` as quantize
    gives. The denominator is not zero."""
    scaled = Fraction(numerator) / Fraction(denominator) * 10**places
    return Decimal(round(scaled)).scaleb(-places, EXACT)


def _by_account(position: Position) -> uuid.UUID:
    return position.account_id
