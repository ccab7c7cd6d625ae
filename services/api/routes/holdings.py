"""Current positions: per account, and consolidated per portfolio."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.api import holdings_json, storage
from services.api.consolidation import consolidate
from services.api.deps import CurrentUser, ReadSession, owned_account, owned_portfolio
from services.api.fast_holdings import FastHoldingsRoute
from services.api.input_types import Timestamp
from services.api.routes import error_responses
from services.api.schemas import ConsolidatedHoldingOut, PositionOut

# On Postgres, FastHoldingsRoute answers most requests itself (fast_holdings.py); the functions below
# are what OpenAPI documents, and the path on SQLite and for input FastAPI refuses.
router = APIRouter(tags=["holdings"], route_class=FastHoldingsRoute)

AsOf = Annotated[
    Timestamp | None,
    Query(
        description="Point in time (ISO 8601 with a zone, e.g. 2026-01-31T15:30:00Z, between 1900 and "
        "9999 in UTC); default: now."
    ),
]


@router.get(
    "/accounts/{account_id}/holdings",
    summary="Current holdings of an account",
    responses=error_responses(401, 404),
    response_model=list[PositionOut],
)
async def account_holdings(
    account_id: uuid.UUID, user: CurrentUser, session: ReadSession, as_of: AsOf = None
) -> Response:
    """What the account holds as of its last successful sync, or as it stood at `as_of`; one line per
    instrument. Each line's `as_of` is when that snapshot was taken."""
    positions = await storage.account_positions(session, account_id, owner_id=user.id, as_of=as_of)
    if not positions:
        await owned_account(account_id, user, session)  # nothing held, or not the caller's: a 404
    return holdings_json.account_holdings(positions)


@router.get(
    "/portfolios/{portfolio_id}/holdings",
    summary="Consolidated holdings of a portfolio",
    responses=error_responses(401, 404),
    response_model=list[ConsolidatedHoldingOut],
)
async def portfolio_holdings(
    portfolio_id: uuid.UUID, user: CurrentUser, session: ReadSession, as_of: AsOf = None
) -> Response:
    """All accounts' positions, now or as they stood at `as_of`: one line per (symbol, exchange,
    currency), with a per-account breakdown."""
    positions = await storage.portfolio_positions(session, portfolio_id, owner_id=user.id, as_of=as_of)
    if not positions:
        await owned_portfolio(portfolio_id, user, session)  # nothing held, or not the caller's: a 404
    return holdings_json.portfolio_holdings(consolidate(positions))
