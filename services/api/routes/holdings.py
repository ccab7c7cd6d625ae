"""Current positions: per account, and consolidated per portfolio."""

from __future__ import annotations

from fastapi import APIRouter

from services.api import storage
from services.api.consolidation import consolidate, market_value
from services.api.deps import OwnedAccount, OwnedPortfolio, Session
from services.api.routes import error_responses
from services.api.schemas import ConsolidatedHoldingOut, PositionOut

router = APIRouter(tags=["holdings"])


@router.get(
    "/accounts/{account_id}/holdings",
    summary="Current holdings of an account",
    responses=error_responses(401, 404),
)
async def account_holdings(account: OwnedAccount, session: Session) -> list[PositionOut]:
    """What the account held at its last successful sync (`as_of`), one line per instrument."""
    return [
        PositionOut(
            symbol=p.symbol,
            exchange=p.exchange,
            isin=p.isin,
            currency=p.currency,
            asset_type=p.asset_type,
            quantity=p.quantity,
            average_price=p.average_price,
            last_price=p.last_price,
            market_value=market_value(p.quantity, p.last_price),
            as_of=p.as_of,
        )
        for p in await storage.account_positions(session, account.id)
    ]


@router.get(
    "/portfolios/{portfolio_id}/holdings",
    summary="Consolidated holdings of a portfolio",
    responses=error_responses(401, 404),
)
async def portfolio_holdings(portfolio: OwnedPortfolio, session: Session) -> list[ConsolidatedHoldingOut]:
    """All accounts' positions, one line per (symbol, exchange, currency), with a per-account breakdown."""
    positions = await storage.portfolio_positions(session, portfolio.id)
    return [ConsolidatedHoldingOut.model_validate(holding) for holding in consolidate(positions)]
