"""Build the events the real ledger applies, so that API tests read what the ledger really writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.events import Holding, HoldingSnapshot, ReportedTrade, TradeSide

BASE = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    """BASE + `hours`: the test's clock, so every time in an assertion is exact."""
    return BASE + timedelta(hours=hours)


def holding(
    symbol: str,
    quantity: str,
    average_price: str = "100",
    last_price: str | None = None,
    *,
    exchange: str = "NSE",
    currency: str = "INR",
) -> Holding:
    return Holding(
        symbol=symbol,
        exchange=exchange,
        currency=currency,
        quantity=Decimal(quantity),
        average_price=Decimal(average_price),
        last_price=None if last_price is None else Decimal(last_price),
    )


def snapshot(
    account_id: str | uuid.UUID,
    taken_at: datetime,
    *holdings: Holding,
    trades: Sequence[ReportedTrade] = (),
    request_id: uuid.UUID | None = None,
    attempt: int = 1,
) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=uuid.UUID(str(account_id)),
        request_id=request_id or uuid.uuid4(),
        broker="sim",
        taken_at=taken_at,
        holdings=holdings,
        trades=tuple(trades),
        attempt=attempt,
    )


def reported(
    trade_id: str, side: TradeSide, symbol: str, quantity: str, price: str, executed_at: datetime
) -> ReportedTrade:
    """A trade the broker reported itself, on NSE in INR."""
    return ReportedTrade(
        trade_id=trade_id,
        symbol=symbol,
        exchange="NSE",
        side=side,
        quantity=Decimal(quantity),
        price=Decimal(price),
        currency="INR",
        executed_at=executed_at,
    )
