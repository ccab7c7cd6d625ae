"""Sign-up and "who am I"."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from services.api import storage_users
from services.api.deps import ApiSettings, CurrentUser, Session, limit_sign_ups
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import UserCreate, UserCreated, UserOut
from shared.events import utc_now

router = APIRouter(tags=["users"], route_class=GuardedRoute)
log = logging.getLogger(__name__)

SignUpLimited = Annotated[None, Depends(limit_sign_ups)]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=error_responses(403),
)
async def create_user(
    body: UserCreate, session: Session, settings: ApiSettings, _: SignUpLimited
) -> UserCreated:
    """Create a user and their first API token (`default`, scope `write`). The token is returned only
    here: only its hash is kept.

    SIGNUP_MODE decides who may: anyone (`open`), the holder of an operator's `invite_code`
    (`invite`), or nobody (`closed`: 403). An address that is registered already gets an answer of
    the same shape, whose token works nowhere: the answer does not say whether it is registered.
    """
    if settings.signup_mode == "closed":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "sign-up is closed on this deployment: ask an operator"
        )
    invite_code = None
    if settings.signup_mode == "invite":
        if not body.invite_code:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "sign-up is by invitation: send your invite_code")
        invite_code = body.invite_code
    try:
        issued = await storage_users.create_user(
            session, email=body.email, now=utc_now(), invite_code=invite_code
        )
    except storage_users.InviteRefused:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "invite_code is unknown, used, expired or for another address"
        ) from None
    except storage_users.EmailTaken:
        log.info("sign-up of a registered address answered with a decoy")
        return UserCreated(id=uuid.uuid4(), email=body.email, api_token=storage_users.new_secret())
    return UserCreated(id=issued.token.user_id, email=body.email, api_token=issued.secret)


@router.get("/me", summary="The caller")
async def read_me(user: CurrentUser) -> UserOut:
    """The user the API token belongs to."""
    return UserOut.model_validate(user)
