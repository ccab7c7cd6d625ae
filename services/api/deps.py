"""Request dependencies: the session, the caller, and the objects the caller owns.

Ownership lives here, not in routes: another user's portfolio or account is a 404, as if it did
not exist, so ids cannot be probed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import storage
from services.api.context import ApiContext
from services.api.storage_users import Caller
from shared.brokers import BrokerType
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.db.errors import is_transient_db_error
from shared.db.tables import BrokerAccount, Portfolio, Role, User
from shared.settings import Settings

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="The api_token returned once by POST /v1/users.")


def api_context(request: Request) -> ApiContext:
    context = getattr(request.app.state, "api_context", None)
    if not isinstance(context, ApiContext):
        raise RuntimeError(
            "the API has no resources: run it inside its lifespan or pass resources to create_app"
        )
    return context


async def request_context(request: Request) -> ApiContext:
    # A coroutine: FastAPI runs a plain function dependency in a worker thread, a hop per request.
    return api_context(request)


Context = Annotated[ApiContext, Depends(request_context)]


async def db_session(context: Context) -> AsyncIterator[AsyncSession]:
    session = context.sessions()
    try:
        yield session
    finally:
        await _close(session)


async def read_session(context: Context) -> AsyncIterator[AsyncSession]:
    """For routes that only read: each statement commits by itself, so a request costs its queries'
    round trips and no BEGIN or ROLLBACK."""
    session = context.reads()
    try:
        yield session
    finally:
        await _close(session)


async def _close(session: AsyncSession) -> None:
    """Close after the route: by then its answer may be sent, so a connection that died meanwhile
    (Postgres restarting) is no error of the request's. The pool drops that connection; anything
    else is a bug and is raised."""
    try:
        await session.close()
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        log.info("closing a request's session: the connection was gone", extra={"error": type(exc).__name__})


async def message_bus(context: Context) -> MessageBus:
    return context.resources.bus


async def credential_cipher(context: Context) -> CredentialCipher:
    return context.resources.cipher


async def settings(context: Context) -> Settings:
    return context.settings


async def known_broker_types(context: Context) -> Mapping[str, BrokerType]:
    return context.broker_types


Session = Annotated[AsyncSession, Depends(db_session)]
ReadSession = Annotated[AsyncSession, Depends(read_session)]
BrokerTypes = Annotated[Mapping[str, BrokerType], Depends(known_broker_types)]
Bus = Annotated[MessageBus, Depends(message_bus)]
Cipher = Annotated[CredentialCipher, Depends(credential_cipher)]
ApiSettings = Annotated[Settings, Depends(settings)]


CALLER_STATE = "caller"
"""Where GuardedRoute leaves the authenticated caller in `request.state`."""


async def current_user(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    """The caller, authenticated by GuardedRoute before the body was read (`bearer` is here only so
    that OpenAPI documents the scheme: the token was checked already)."""
    caller = getattr(request.state, CALLER_STATE, None)
    if not isinstance(caller, Caller):
        raise RuntimeError(f"{request.url.path} depends on current_user but its route is not a GuardedRoute")
    return caller.user


CurrentUser = Annotated[User, Depends(current_user)]


async def operator_user(user: CurrentUser) -> User:
    """The caller, if an operator; anyone else gets a 403 (the admin routes are public knowledge:
    they are in the OpenAPI document, so a 404 would hide nothing)."""
    if user.role != Role.OPERATOR:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "operators only: your user's role is not operator")
    return user


OperatorUser = Annotated[User, Depends(operator_user)]


async def limit_sign_ups() -> None:
    """A marker: GuardedRoute counts the requests of a route depending on it per client address
    (SIGNUP_RATE_LIMIT_PER_HOUR) before reading its body."""


async def owned_portfolio(portfolio_id: uuid.UUID, user: CurrentUser, session: Session) -> Portfolio:
    portfolio = await storage.owned_portfolio(session, user_id=user.id, portfolio_id=portfolio_id)
    if portfolio is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "portfolio not found")
    return portfolio


async def owned_account(account_id: uuid.UUID, user: CurrentUser, session: Session) -> BrokerAccount:
    account = await storage.owned_account(session, user_id=user.id, account_id=account_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account not found")
    return account


OwnedPortfolio = Annotated[Portfolio, Depends(owned_portfolio)]
OwnedAccount = Annotated[BrokerAccount, Depends(owned_account)]


async def account_filter(
    user: CurrentUser,
    session: ReadSession,
    account_id: Annotated[uuid.UUID | None, Query(description="Only this account's (one of yours).")] = None,
) -> BrokerAccount | None:
    """An optional `account_id` query filter: absent is None, another user's is a 404 like a path id."""
    return None if account_id is None else await owned_account(account_id, user, session)


async def portfolio_filter(
    user: CurrentUser,
    session: ReadSession,
    portfolio_id: Annotated[
        uuid.UUID | None, Query(description="Only those of this portfolio's accounts (one of yours).")
    ] = None,
) -> Portfolio | None:
    return None if portfolio_id is None else await owned_portfolio(portfolio_id, user, session)


AccountFilter = Annotated[BrokerAccount | None, Depends(account_filter)]
PortfolioFilter = Annotated[Portfolio | None, Depends(portfolio_filter)]
