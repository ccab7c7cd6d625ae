"""Operators' routes. Every one is guarded by the router's OperatorUser dependency: a route added
here cannot forget it, and anyone who is not an operator gets a 403."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Depends, HTTPException, status

from services.api import storage_users
from services.api.deps import OperatorUser, Session, operator_user
from services.api.guard import GuardedRoute
from services.api.routes import admin_bus, admin_runs, error_responses
from services.api.routes.tokens import issue_token
from services.api.schemas_identity import InviteCreate, InviteCreated, TokenCreate, TokenCreated
from shared.events import utc_now
from shared.run_trace import RunTrace, load_run_trace

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    route_class=GuardedRoute,
    dependencies=[Depends(operator_user)],
    responses=error_responses(403),
)


@router.post("/invites", status_code=status.HTTP_201_CREATED, summary="Invite someone to sign up")
async def create_invite(body: InviteCreate, operator: OperatorUser, session: Session) -> InviteCreated:
    """An invite code for `POST /v1/users` (SIGNUP_MODE=invite), usable once, until it expires, by
    `email` if given. The code is returned only here: only its hash is kept."""
    now = utc_now()
    invite, code = await storage_users.create_invite(
        session,
        created_by=operator.id,
        email=body.email,
        expires_at=now + timedelta(seconds=body.expires_in_seconds),
        now=now,
    )
    return InviteCreated(id=invite.id, email=invite.email, expires_at=invite.expires_at, code=code)


@router.post(
    "/users/{user_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Issue a token to a user",
    responses=error_responses(404, 409),
)
async def issue_user_token(user_id: uuid.UUID, body: TokenCreate, session: Session) -> TokenCreated:
    """A new token for a user who lost theirs; hand its secret (shown only here) to them."""
    if await storage_users.user_by_id(session, user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return await issue_token(session, user_id=user_id, body=body)


@router.get(
    "/runs/{run_id}/trace",
    summary="Follow one sync run",
    responses=error_responses(404),
)
async def trace_run(run_id: uuid.UUID, session: Session) -> RunTrace:
    """The run's path across the services: who or what requested it; each attempt (which fetcher,
    when, how long, what the broker answered); the snapshot stored and its outcome; the
    HoldingsChanged that announced it. Any user's run: this is the operator's view."""
    trace = await load_run_trace(session, run_id)
    if trace is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "sync run not found")
    return trace


# Each part's router carries the OperatorUser dependency itself (`operator_router()`): a route sees
# only the dependencies it was built with, and GuardedRoute decides from them that it authenticates.
router.include_router(admin_runs.router)
router.include_router(admin_bus.router)


def _every_route_is_for_operators() -> None:
    for part in (admin_runs.router, admin_bus.router):
        for route in part.routes:
            if not isinstance(route, GuardedRoute) or not route.authenticates:
                raise TypeError(f"admin route {route} is not guarded by OperatorUser")


_every_route_is_for_operators()
