"""Portfolios: named groups of the caller's broker accounts."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.api import storage
from services.api.deps import ApiSettings, CurrentUser, OwnedPortfolio, Session
from services.api.guard import GuardedRoute
from services.api.routes import BODY_ERRORS, error_responses
from services.api.schemas import PortfolioCreate, PortfolioOut
from shared.events import utc_now

router = APIRouter(tags=["portfolios"], route_class=GuardedRoute)


@router.post(
    "/portfolios",
    status_code=status.HTTP_201_CREATED,
    summary="Create a portfolio",
    responses=error_responses(*BODY_ERRORS, 401, 409),
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


@router.get("/portfolios", summary="List your portfolios", responses=error_responses(401))
async def list_portfolios(user: CurrentUser, session: Session) -> list[PortfolioOut]:
    """The caller's portfolios, oldest first."""
    return [PortfolioOut.model_validate(p) for p in await storage.user_portfolios(session, user.id)]


@router.get("/portfolios/{portfolio_id}", summary="Get a portfolio", responses=error_responses(401, 404))
async def read_portfolio(portfolio: OwnedPortfolio) -> PortfolioOut:
    return PortfolioOut.model_validate(portfolio)
