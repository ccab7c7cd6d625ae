"""A portfolio's value over time, per currency, for charts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from services.api import storage_valuations
from services.api.deps import OwnedPortfolio, Session
from services.api.guard import GuardedRoute
from services.api.input_types import Timestamp
from services.api.routes import error_responses
from services.api.schemas_valuations import ValuationPointOut, ValuationsOut
from shared.events import utc_now

router = APIRouter(tags=["holdings"], route_class=GuardedRoute)

MAX_POINTS = 500


@router.get(
    "/portfolios/{portfolio_id}/valuations",
    summary="Value of a portfolio over time",
    responses=error_responses(401, 404),
)
async def portfolio_valuations(
    portfolio: OwnedPortfolio,
    session: Session,
    since: Annotated[
        Timestamp | None,
        Query(description="Start of the range (ISO 8601 with a zone); default: the first snapshot."),
    ] = None,
    until: Annotated[
        Timestamp | None, Query(description="End of the range, inclusive; default: now.")
    ] = None,
    points: Annotated[
        int,
        Query(ge=1, le=MAX_POINTS, description="How many slices the range is cut into (see below)."),
    ] = MAX_POINTS,
) -> ValuationsOut:
    """What the portfolio's positions were worth over a range of time, per currency: at each point,
    the sum of quantity x last price over what its accounts held then (the positions
    `GET /v1/portfolios/{id}/holdings?as_of=` lists; each account's at the price its own snapshot
    reported). Values in different currencies are never added up.

    The range is cut into `points` equal slices; a slice in which some account synced gives one point
    per currency, at the newest snapshot taken in it; a slice without a sync gives none (the value
    did not change). What was held before the range gives a point at `since`. So a long history
    comes back as at most `points` + 1 points per currency. A `since` not before `until` is a 422.
    """
    until = until or utc_now()
    if since is None:
        since = await storage_valuations.first_snapshot_at(session, portfolio.id)
        if since is None or since >= until:
            return ValuationsOut(since=since, until=until, points=[])
    elif since >= until:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "since"),
                    "msg": f"since ({since.isoformat()}) must be before until ({until.isoformat()})",
                }
            ]
        )
    valuations = await storage_valuations.portfolio_valuations(
        session, portfolio.id, since=since, until=until, points=points
    )
    return ValuationsOut(
        since=since,
        until=until,
        points=[ValuationPointOut(at=v.at, currency=v.currency, value=v.value) for v in valuations],
    )
