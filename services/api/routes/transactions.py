"""Trades across the caller's accounts: derived from snapshot changes or reported by brokers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.api import paging, storage
from services.api.deps import AccountFilter, CurrentUser, PortfolioFilter, ReadSession
from services.api.guard import GuardedRoute
from services.api.input_types import Text, Timestamp
from services.api.routes import error_responses
from services.api.schemas import TransactionOrigin, TransactionOut, TransactionPage
from shared.db.tables import Transaction

router = APIRouter(tags=["transactions"], route_class=GuardedRoute)

LIST = "transactions"
"""The name cursors of this list carry: a cursor of another list is refused."""


@router.get(
    "/transactions",
    summary="List your transactions",
    responses=error_responses(400, 401, 404),
)
async def list_transactions(
    user: CurrentUser,
    session: ReadSession,
    account: AccountFilter,
    portfolio: PortfolioFilter,
    page: Annotated[paging.PageRequest, paging.page_request(100)],
    symbol: Annotated[
        Text | None,
        Query(min_length=1, max_length=64, description="Only this symbol, spelt as the broker does."),
    ] = None,
    since: Annotated[
        Timestamp | None,
        Query(
            alias="from",
            description="Only those at or after this time (ISO 8601 with a zone, 1900-9999 in UTC).",
        ),
    ] = None,
    until: Annotated[
        Timestamp | None, Query(alias="to", description="Only those before this time (exclusive).")
    ] = None,
    origin: Annotated[
        TransactionOrigin | None, Query(description="Only derived or only reported ones.")
    ] = None,
) -> TransactionPage:
    """The trades of your accounts, newest first, one page at a time.

    A trade is *derived* when the ledger inferred it from the change between two consecutive
    snapshots, or *reported* when the broker listed it. Filters combine (all must hold). Follow
    `next_cursor` until it is null to read every match exactly once, even while new trades arrive
    (they are newer, so they do not shift later pages); keep the same filters from page to page.
    """
    if since is not None and until is not None and since > until:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"`from` ({since.isoformat()}) is after `to` ({until.isoformat()}): "
            "`from` is inclusive and `to` exclusive",
        )
    after = page.after(LIST)
    wanted = storage.TransactionFilter(
        user_id=user.id,
        account_id=account.id if account else None,
        portfolio_id=portfolio.id if portfolio else None,
        symbol=symbol,
        since=since,
        until=until,
        origin=origin.value if origin else None,
    )
    # One more than asked: whether it comes back says whether there is a next page.
    rows = await storage.transactions(session, wanted, after=after, limit=page.limit + 1)
    items, next_cursor = paging.page_of(
        LIST, rows, page.limit, position=_position, item=TransactionOut.model_validate
    )
    return TransactionPage(items=items, next_cursor=next_cursor)


def _position(transaction: Transaction) -> paging.Position:
    return paging.Position(at=transaction.occurred_at, id=transaction.id)
