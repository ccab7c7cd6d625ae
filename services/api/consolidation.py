"""The consolidated view of a portfolio: its accounts' positions, one line per instrument."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# Prices are stored with 8 decimal places; a derived average keeps the same scale.
_PRICE_SCALE = Decimal("0.00000001")


@dataclass(frozen=True)
class Position:
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


@dataclass(frozen=True)
class AccountShare:
    account_id: uuid.UUID
    quantity: Decimal
    average_price: Decimal
    as_of: datetime


@dataclass(frozen=True)
class ConsolidatedHolding:
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
    return None if last_price is None else quantity * last_price


def consolidate(positions: Iterable[Position]) -> list[ConsolidatedHolding]:
    """Group by (symbol, exchange, currency): the same instrument in another currency is another line."""
    groups: dict[tuple[str, str, str], list[Position]] = {}
    for position in positions:
        groups.setdefault((position.symbol, position.exchange, position.currency), []).append(position)
    return [_holding(key, group) for key, group in sorted(groups.items())]


def _holding(key: tuple[str, str, str], group: list[Position]) -> ConsolidatedHolding:
    symbol, exchange, currency = key
    quantity = sum((p.quantity for p in group), Decimal(0))
    priced = [p for p in group if p.last_price is not None]
    # The freshest quote wins: accounts synced at different times may report different prices.
    last_price = max(priced, key=lambda p: p.as_of).last_price if priced else None
    return ConsolidatedHolding(
        symbol=symbol,
        exchange=exchange,
        currency=currency,
        isin=next((p.isin for p in group if p.isin), None),
        asset_type=group[0].asset_type,
        quantity=quantity,
        average_price=_weighted_average_price(group),
        last_price=last_price,
        market_value=market_value(quantity, last_price),
        accounts=tuple(
            AccountShare(
                account_id=p.account_id, quantity=p.quantity, average_price=p.average_price, as_of=p.as_of
            )
            for p in sorted(group, key=lambda p: p.account_id)
        ),
    )


def _weighted_average_price(group: list[Position]) -> Decimal | None:
    """Average cost weighted by size; by absolute size, so a short in one account cannot flip its sign."""
    weight = sum((abs(p.quantity) for p in group), Decimal(0))
    if not weight:
        return None
    cost = sum((abs(p.quantity) * p.average_price for p in group), Decimal(0))
    return (cost / weight).quantize(_PRICE_SCALE)
