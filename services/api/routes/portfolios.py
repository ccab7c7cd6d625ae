"""Portfolios: named groups of the caller's broker accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from services.api import paging, storage, storage_edits
from services.api.deps import ApiSettings, CurrentUser, OwnedPortfolio, Session
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import PortfolioCreate, PortfolioOut, PortfolioPage, PortfolioUpdate
from shared.db.tables import Portfolio
from shared.events import utc_now

router = APIRouter(tags=["portfolios"], route_class=GuardedRoute)

LIST = "portfolios"
"""The name cursors of this list carry: a cursor of another list is refused."""


@router.post(
    "/portfolios",
    status_code=status.HTTP_201_CREATED,
    summary="Create a portfolio",
    responses=error_responses(401, 409),
)
async def create_portfolio(
    body: PortfolioCreate, user: CurrentUser, session: Session, settings: ApiSettings
) -> PortfolioOut:
    """Create a portfolio; its name must be unique among the caller's portfolios, who hold at most
    MAX_PORTFOLIOS_PER_USER (one more is a 409)."""
    portfolio = await storage.create_portfolio(
        session,
        user_id=user.id,
        name=body.name,
        now=utc_now(),
        max_portfolios=settings.max_portfolios_per_user,
    )
    return PortfolioOut.model_validate(portfolio)


@router.get("/portfolios", summary="List your portfolios", responses=error_responses(400, 401))
async def list_portfolios(
    user: CurrentUser, session: Session, page: Annotated[paging.PageRequest, paging.page_request(100)]
) -> PortfolioPage:
    """The caller's portfolios, oldest first, one page at a time: follow `next_cursor`."""
    rows = await storage.user_portfolios(session, user.id, after=page.after(LIST), limit=page.limit + 1)
    items, next_cursor = paging.page_of(
        LIST, rows, page.limit, position=_position, item=PortfolioOut.model_validate
    )
    return PortfolioPage(items=items, next_cursor=next_cursor)


@router.get("/portfolios/{portfolio_id}", summary="Get a portfolio", responses=error_responses(401, 404))
async def read_portfolio(portfolio: OwnedPortfolio) -> PortfolioOut:
    return PortfolioOut.model_validate(portfolio)


@router.patch(
    "/portfolios/{portfolio_id}",
    summary="Rename a portfolio, or pause or resume its scheduled syncs",
    responses=error_responses(401, 404, 409),
)
async def update_portfolio(
    body: PortfolioUpdate, portfolio: OwnedPortfolio, session: Session
) -> PortfolioOut:
    """Change what the body names; a field left out keeps its value. `active: false` stops the
    portfolio's accounts being synced on schedule ("sync now" still works); `true` resumes them.
    The new name must be unique among your portfolios (409)."""
    updated = await storage_edits.update_portfolio(session, portfolio, name=body.name, active=body.active)
    return PortfolioOut.model_validate(updated)


def _position(portfolio: Portfolio) -> paging.Position:
    return paging.Position(at=portfolio.created_at, id=portfolio.id)
