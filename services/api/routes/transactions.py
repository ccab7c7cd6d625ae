"""Trades across the caller's accounts: derived from snapshot changes or reported by brokers."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.api import storage
from services.api.deps import AccountFilter, CurrentUser, PortfolioFilter, Session
from services.api.guard import GuardedRoute
from services.api.input_types import Text, Timestamp
from services.api.routes import error_responses
from services.api.schemas import TransactionOrigin, TransactionOut, TransactionPage

router = APIRouter(tags=["transactions"], route_class=GuardedRoute)

MAX_CURSOR_CHARS = 200


class InvalidCursor(ValueError):
    """A `cursor` this API did not hand out (or one altered on the way)."""


def encode_cursor(position: storage.TransactionPosition) -> str:
    """Opaque to clients; today base64url of `["<occurred_at ISO 8601>", "<id>"]`."""
    raw = json.dumps([position.occurred_at.isoformat(), str(position.id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> storage.TransactionPosition:
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred_at, id_ = json.loads(raw)
        position = storage.TransactionPosition(
            occurred_at=datetime.fromisoformat(occurred_at), id=uuid.UUID(id_)
        )
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
        # ValueError covers bad JSON, bad ISO dates, bad UUIDs and an unpacking of the wrong length.
        raise InvalidCursor(cursor) from None
    if position.occurred_at.tzinfo is None:
        raise InvalidCursor(cursor)
    return position


@router.get(
    "/transactions",
    summary="List your transactions",
    responses=error_responses(400, 401, 404),
)
async def list_transactions(
    user: CurrentUser,
    session: Session,
    account: AccountFilter,
    portfolio: PortfolioFilter,
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
    limit: Annotated[int, Query(ge=1, le=500, description="Most transactions on one page.")] = 100,
    cursor: Annotated[
        str | None,
        Query(description="The `next_cursor` of the previous page; leave out (or empty) for the first."),
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
    after = None
    if cursor:  # `cursor=` (empty) is the first page, as if left out
        try:
            after = decode_cursor(cursor)
        except InvalidCursor:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                "invalid cursor: pass the `next_cursor` of the previous page unchanged, "
                "or leave `cursor` out to start from the newest",
            ) from None
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
    rows = await storage.transactions(session, wanted, after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(storage.TransactionPosition(occurred_at=last.occurred_at, id=last.id))
    return TransactionPage(items=[TransactionOut.model_validate(t) for t in page], next_cursor=next_cursor)
