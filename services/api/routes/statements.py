"""Holdings statements uploaded as CSV: the way a `csv` account learns what it holds.

A statement is imported whole or not at all: a file with any bad row is a 422 listing every
problem by line, and nothing is recorded or published. An accepted file becomes a HoldingSnapshot
on holdings.snapshots, which the ledger applies like a broker's; its sync run (trigger "import")
is recorded before the snapshot is published, so the outcome has a home.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import storage
from services.api.deps import Bus, CurrentUser, OwnedAccount, Session
from services.api.errors import unavailable, validation_problems
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import StatementAccepted, StatementProblemOut, StatementRejectedOut
from shared import topics
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import BrokerAccount
from shared.events import HoldingSnapshot, utc_now
from shared.snapshot_review import SnapshotSource, hold_reason
from shared.statements import (
    STATEMENT_BROKER,
    RowProblem,
    StatementRejected,
    parse_statement,
)


class _ProblemsRoute(GuardedRoute):
    """Every 422 of a statement route lists `problems`, as its schema says: a malformed request
    (say, an account id that is no UUID) too, as problems of line 0."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_with_problems(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                problems = [
                    RowProblem(0, f"{'.'.join(map(str, error['loc']))}: {error['msg']}")
                    for error in validation_problems(exc)
                ]
                return _rejected(StatementRejected(problems), what="request")

        return handle_with_problems


router = APIRouter(tags=["sync"], route_class=_ProblemsRoute)
log = logging.getLogger(__name__)

STATEMENTS_PATH = "/accounts/{account_id}/statements"
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv"})
MAX_PROBLEMS_SHOWN = 1000
MAX_SNAPSHOT_BYTES = 1_000_000
"""The largest snapshot an import publishes: Kafka refuses a record over 1 MiB by default (the
producer's max_request_size, the broker's message.max.bytes), which no retry would cure. At about
140-170 bytes a holding, that is some 6,000 holdings, well short of the 50,000 rows a file may have."""
_UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})

_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The statement file itself, UTF-8 CSV: see docs/statements.md for the formats.",
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "symbol,quantity,average_price,currency\nAAPL,12,145.30,USD\n",
            }
        },
    }
}


@router.post(
    STATEMENTS_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StatementAccepted,
    summary="Import a holdings statement (CSV)",
    responses={
        **error_responses(401, 404, 409, 413, 415, 503),
        422: {
            "model": StatementRejectedOut,
            "description": "The statement has problems: nothing was imported.",
        },
    },
    openapi_extra=_REQUEST_BODY,
)
async def import_statement(
    request: Request, account: OwnedAccount, user: CurrentUser, session: Session, bus: Bus
) -> StatementAccepted | JSONResponse:
    """Replace the account's holdings with those of a statement file, sent as the request body.

    Only accounts of broker `csv` take statements. Formats: the generic CSV (`symbol, quantity,
    average_price, currency`, optionally `exchange, isin, asset_type, last_price`) and Zerodha
    Console's holdings download saved as CSV. At most 5 MB and 50,000 rows. The import runs
    asynchronously like a sync: follow it by `request_id` in sync-runs.

    A statement that leaves out all, or most, of what the account holds is held for review by the
    ledger instead of applied: the answer then says `held_for_review: true`, why, and how to accept it.
    """
    if account.broker != STATEMENT_BROKER:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"this account syncs from broker {account.broker!r}; statements are imported into accounts "
            f"of broker {STATEMENT_BROKER!r} (create one with POST /v1/portfolios/{{id}}/accounts)",
        )
    _require_csv(request)
    data = await request.body()  # at most MAX_STATEMENT_BYTES: RequestBodyCap refuses more (413)
    context = {"account_id": str(account.id)}
    try:
        # Up to 5 MB of parsing: off the event loop, so that other requests are not held up.
        statement = await asyncio.to_thread(parse_statement, data)
    except StatementRejected as exc:
        log.info("statement rejected", extra={**context, "problems": len(exc.problems)})
        return _rejected(exc)

    now = utc_now()
    snapshot = HoldingSnapshot(
        account_id=account.id,
        request_id=uuid.uuid4(),
        broker=account.broker,
        taken_at=now,
        holdings=statement.holdings,
    )
    encoded = snapshot.to_bytes()
    if len(encoded) > MAX_SNAPSHOT_BYTES:
        log.info("statement too large to publish", extra={**context, "bytes": len(encoded)})
        return _rejected(StatementRejected([_too_many_holdings(len(statement.holdings), len(encoded))]))
    review = await _review(session, account, snapshot)
    await storage.record_import(
        session, run_id=snapshot.request_id, account_id=account.id, requested_by=user.id, now=now
    )
    run_id = str(snapshot.request_id)
    context |= {"run_id": run_id, "request_id": run_id, "broker": account.broker}
    context |= {"format": statement.format.value}
    try:
        await bus.publish([OutgoingMessage(topics.HOLDINGS_SNAPSHOTS, snapshot.key, encoded)])
    except BusUnavailable:
        log.exception("statement snapshot not published", extra=context)
        await storage.record_unpublished_request(
            session,
            snapshot.request_id,
            now=utc_now(),
            reason="the imported statement could not be published to the message bus",
        )
        raise unavailable(
            "the statement could not be imported (message bus unavailable): upload it again"
        ) from None
    log.info(
        "statement imported",
        extra={**context, "holdings": len(statement.holdings), "held_for_review": review is not None},
    )
    return StatementAccepted(
        request_id=snapshot.request_id,
        holdings=len(statement.holdings),
        snapshot_id=snapshot.event_id,
        held_for_review=review is not None,
        review=review,
        format=statement.format,
        statement_date=statement.statement_date,
    )


async def _review(session: AsyncSession, account: BrokerAccount, snapshot: HoldingSnapshot) -> str | None:
    """What to tell the uploader when the ledger will hold the statement (the rule it applies, to the
    account as it stands now), or None when the statement will become the account's positions."""
    current = await storage.instruments_of(session, account.current_snapshot_id) or set()
    held = await storage.instruments_of(session, account.held_snapshot_id)
    incoming = [(h.symbol, h.exchange) for h in snapshot.holdings]
    reason = hold_reason(current, incoming, held, source=SnapshotSource.STATEMENT)
    if reason is None:
        return None
    return (
        f"{reason}, so it will be held for review, not applied: a statement is the whole account, and "
        "one that leaves out most of it is more often an incomplete file than a sale. If the account "
        "really holds only what this file lists, accept it once it shows as held_snapshot on "
        f"GET /v1/accounts/{account.id}: POST /v1/accounts/{account.id}/held-snapshot/accept with "
        f'{{"snapshot_id": "{snapshot.event_id}"}} (or upload the same file again, which confirms it). '
        "Otherwise upload the complete statement: it replaces this one."
    )


def _require_csv(request: Request) -> None:
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    charset = ""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media_type.strip().lower() not in CSV_MEDIA_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the statement file itself as the request body, with Content-Type: text/csv",
        )
    if charset and charset not in _UTF8_CHARSETS:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"statements are read as UTF-8, not {charset[:40]!r}"
        )


def _too_many_holdings(count: int, size: int) -> RowProblem:
    return RowProblem(
        0,
        f"the statement's {count} holdings make a message of {size} bytes, more than the "
        f"{MAX_SNAPSHOT_BYTES} one import can carry: split them over several csv accounts",
    )


def _rejected(exc: StatementRejected, what: str = "statement") -> JSONResponse:
    shown = exc.problems[:MAX_PROBLEMS_SHOWN]
    detail = f"{what} rejected: {len(exc.problems)} problem(s)"
    if len(shown) < len(exc.problems):
        detail += f", the first {len(shown)} listed"
    body = StatementRejectedOut(
        detail=detail, problems=[StatementProblemOut(line=p.line, message=p.message) for p in shown]
    )
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=body.model_dump())
