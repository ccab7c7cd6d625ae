"""The router every operator route is built on: GuardedRoute, the OperatorUser dependency (others
get a 403), documented as such. One function, so no part of `/v1/admin` can forget the guard."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.api.deps import operator_user
from services.api.guard import GuardedRoute
from services.api.routes import error_responses


def operator_router() -> APIRouter:
    return APIRouter(
        route_class=GuardedRoute, dependencies=[Depends(operator_user)], responses=error_responses(403)
    )
