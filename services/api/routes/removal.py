"""DELETE what you own: an account's credentials, an account, a portfolio, yourself.

Everything under the deleted object goes with it, and an AccountRemoved on `holdings.changes` tells
subscribers to forget each account, published before anything is deleted (see
`services.api.removal` for the order and what a crash between the two leaves).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Response, status

from services.api import removal
from services.api.deps import Bus, CurrentUser, OwnedAccount, OwnedPortfolio, Session
from services.api.errors import unavailable
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from shared.bus.port import BusUnavailable

router = APIRouter(route_class=GuardedRoute)
log = logging.getLogger(__name__)

_UNANNOUNCED = (
    "nothing was deleted: the removal could not be announced to subscribers (message bus unavailable); "
    "try again"
)


def _no_content() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _bus_down(what: str) -> HTTPException:
    log.exception("removal not announced", extra={"removing": what})
    return unavailable(_UNANNOUNCED)


@router.delete(
    "/accounts/{account_id}/credentials",
    tags=["accounts"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Forget the account's broker credentials",
    responses=error_responses(401, 404),
)
async def delete_credentials(account: OwnedAccount, session: Session) -> Response:
    """Delete the stored credentials, if any (repeating it changes nothing). The account's syncs
    fail as `auth` (it then `needs_reauth`) until new ones are set with PUT."""
    await removal.remove_credentials(session, account.id)
    log.info("credentials deleted", extra={"account_id": str(account.id)})
    return _no_content()


@router.delete(
    "/accounts/{account_id}",
    tags=["accounts"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an account and everything recorded of it",
    responses=error_responses(401, 404, 503),
)
async def delete_account(account: OwnedAccount, session: Session, bus: Bus) -> Response:
    """Delete the account with its credentials, schedule, sync runs, snapshots and transactions.
    Subscribers of `holdings.changes` get an AccountRemoved first (and `holdings.current` a tombstone);
    if it cannot be sent, nothing is deleted (503)."""
    account_id = account.id  # read before a rollback expires the object
    try:
        await removal.remove_account(session, bus, account_id)
    except BusUnavailable:
        raise _bus_down(f"account {account_id}") from None
    return _no_content()


@router.delete(
    "/portfolios/{portfolio_id}",
    tags=["portfolios"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a portfolio and all its accounts",
    responses=error_responses(401, 404, 503),
)
async def delete_portfolio(portfolio: OwnedPortfolio, session: Session, bus: Bus) -> Response:
    """Delete the portfolio and every account in it, as DELETE /v1/accounts/{id} does for one."""
    portfolio_id = portfolio.id  # read before a rollback expires the object
    try:
        await removal.remove_portfolio(session, bus, portfolio_id)
    except BusUnavailable:
        raise _bus_down(f"portfolio {portfolio_id}") from None
    return _no_content()


@router.delete(
    "/me",
    tags=["users"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete your user and everything you own",
    responses=error_responses(401, 503),
)
async def delete_me(user: CurrentUser, session: Session, bus: Bus) -> Response:
    """Delete your user, your API tokens, and every portfolio and account you own. Irreversible:
    the token you sent stops working at once."""
    user_id = user.id  # read before a rollback expires the object
    try:
        await removal.remove_user(session, bus, user_id)
    except BusUnavailable:
        raise _bus_down(f"user {user_id}") from None
    log.info("user deleted", extra={"user_id": str(user_id)})
    return _no_content()
