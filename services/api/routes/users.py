"""Sign-up and "who am I"."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, status

from services.api import storage
from services.api.deps import CurrentUser, Session, token_hash
from services.api.routes import BODY_ERRORS, error_responses
from services.api.schemas import UserCreate, UserCreated, UserOut
from shared.events import utc_now

router = APIRouter(tags=["users"])


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=error_responses(*BODY_ERRORS, 409),
)
async def create_user(body: UserCreate, session: Session) -> UserCreated:
    """Create a user and their API token. The token is returned only here: only its hash is kept."""
    token = secrets.token_urlsafe(32)
    user = await storage.create_user(
        session, email=body.email, api_token_hash=token_hash(token), now=utc_now()
    )
    return UserCreated(id=user.id, email=user.email, api_token=token)


@router.get("/me", summary="The caller", responses=error_responses(401))
async def read_me(user: CurrentUser) -> UserOut:
    """The user the API token belongs to."""
    return UserOut.model_validate(user)
