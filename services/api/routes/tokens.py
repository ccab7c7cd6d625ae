"""The caller's named API tokens: create (the secret shown once), list, revoke."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError

from services.api import storage_users
from services.api.deps import CurrentUser, Session
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas_identity import TokenCreate, TokenCreated, TokenOut
from shared.events import utc_now

router = APIRouter(tags=["tokens"], route_class=GuardedRoute)


async def issue_token(session: Session, *, user_id: uuid.UUID, body: TokenCreate) -> TokenCreated:
    """Issue a token to `user_id` as `body` asks; the secret goes out once, in the answer."""
    now = utc_now()
    try:
        expires_at = body.expiry(now)
    except ValueError as exc:
        # The shape of every other 422 (FastAPI's validation errors), as the OpenAPI document says.
        error = {"type": "value_error", "loc": ("body", "expires_at"), "msg": str(exc)}
        raise RequestValidationError([error]) from None
    try:
        issued = await storage_users.issue_token(
            session, user_id=user_id, name=body.name, scope=body.scope, expires_at=expires_at, now=now
        )
    except storage_users.TokenNameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return TokenCreated(**TokenOut.model_validate(issued.token).model_dump(), token=issued.secret)


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token",
    responses=error_responses(409),
)
async def create_token(body: TokenCreate, user: CurrentUser, session: Session) -> TokenCreated:
    """A new named token of yours; `token` (the secret) is returned only here. Needs a write token."""
    return await issue_token(session, user_id=user.id, body=body)


@router.get("/tokens", summary="List your API tokens")
async def list_tokens(user: CurrentUser, session: Session) -> list[TokenOut]:
    """Your tokens, revoked and expired ones included, oldest first; never their secrets."""
    return [TokenOut.model_validate(t) for t in await storage_users.user_tokens(session, user.id)]


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API token",
    responses=error_responses(404),
)
async def revoke_token(token_id: uuid.UUID, user: CurrentUser, session: Session) -> Response:
    """The token stops working at once (401). Revoking the token you send is allowed: it is your
    last request with it. Revoking again changes nothing."""
    if not await storage_users.revoke_token(session, user_id=user.id, token_id=token_id, now=utc_now()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "token not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
