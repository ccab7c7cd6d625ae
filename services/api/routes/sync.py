"""Sync history, and "sync now"."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, status

from services.api import paging, storage, storage_schedules
from services.api.deps import Bus, CurrentUser, OwnedAccount, Session
from services.api.errors import unavailable
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import SyncAccepted, SyncRunOut, SyncRunPage
from shared import topics
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import SyncRun
from shared.events import SyncRequested, SyncTrigger, utc_now
from shared.metrics import SYNC_REQUESTS
from shared.statements import STATEMENT_BROKER

router = APIRouter(tags=["sync"], route_class=GuardedRoute)
log = logging.getLogger(__name__)

LIST = "sync-runs"
"""The name cursors of this list carry: a cursor of another list is refused."""


@router.get(
    "/accounts/{account_id}/sync-runs",
    summary="Sync history of an account",
    responses=error_responses(400, 401, 404),
)
async def list_sync_runs(
    account: OwnedAccount, session: Session, page: Annotated[paging.PageRequest, paging.page_request(50)]
) -> SyncRunPage:
    """The account's sync runs, newest first, scheduled and manual alike, one page at a time:
    follow `next_cursor`."""
    rows = await storage.sync_runs(session, account.id, after=page.after(LIST), limit=page.limit + 1)
    items, next_cursor = paging.page_of(
        LIST, rows, page.limit, position=_position, item=SyncRunOut.model_validate
    )
    statuses = await storage.snapshot_statuses(session, [i.snapshot_id for i in items if i.snapshot_id])
    items = [
        item.model_copy(
            update={"snapshot_status": statuses.get(item.snapshot_id) if item.snapshot_id else None}
        )
        for item in items
    ]
    return SyncRunPage(items=items, next_cursor=next_cursor)


@router.get(
    "/accounts/{account_id}/sync-runs/{run_id}",
    summary="One sync run of an account",
    responses=error_responses(401, 404),
)
async def read_sync_run(run_id: uuid.UUID, account: OwnedAccount, session: Session) -> SyncRunOut:
    """The run that `POST /v1/accounts/{id}/sync` (or a statement upload) answered with as
    `request_id`: poll it until `status` is succeeded or failed and, for a snapshot, `snapshot_status`
    says what the ledger made of it."""
    run = await storage.sync_run(session, account.id, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this account has no sync run of that id")
    item = SyncRunOut.model_validate(run)
    if item.snapshot_id is None:
        return item
    statuses = await storage.snapshot_statuses(session, [item.snapshot_id])
    return item.model_copy(update={"snapshot_status": statuses.get(item.snapshot_id)})


def _position(run: SyncRun) -> paging.Position:
    return paging.Position(at=run.requested_at, id=run.id)


@router.post(
    "/accounts/{account_id}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Sync an account now",
    responses=error_responses(401, 404, 409, 503),
)
async def sync_now(account: OwnedAccount, user: CurrentUser, session: Session, bus: Bus) -> SyncAccepted:
    """Request a sync outside the schedule. It runs asynchronously: follow it by `request_id` in sync-runs."""
    if account.broker == STATEMENT_BROKER:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"this account has no broker to sync from (broker {STATEMENT_BROKER!r}): upload a holdings "
            f"statement instead, with POST /v1/accounts/{account.id}/statements",
        )
    if account.needs_reauth:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the broker rejected this account's credentials: set new ones with "
            f"PUT /v1/accounts/{account.id}/credentials, then sync again",
        )
    pause = await storage_schedules.broker_pause(session, account.broker)
    if pause is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"broker {account.broker!r} is paused by an operator ({pause.reason}): nothing is requested "
            "from it until it is resumed",
        )
    request = SyncRequested(
        account_id=account.id,
        broker=account.broker,
        trigger=SyncTrigger.MANUAL,
        requested_by=user.id,
        credentials_ciphertext=await storage.stored_ciphertext(session, account.id),
    )
    await storage.record_sync_request(session, request)
    run_id = str(request.event_id)
    context = {
        "run_id": run_id,
        "account_id": str(account.id),
        "request_id": run_id,
        "broker": account.broker,
    }
    try:
        await bus.publish(
            [OutgoingMessage(topics.sync_requests(account.broker), request.key, request.to_bytes())]
        )
    except BusUnavailable:
        # The run must not stay "requested" forever; the caller may simply try again.
        log.exception("sync request not published", extra=context)
        await storage.record_unpublished_request(session, request.event_id, now=utc_now())
        raise unavailable("the sync could not be requested (message bus unavailable): try again") from None
    SYNC_REQUESTS.labels(broker=account.broker, trigger=request.trigger.value).inc()
    log.info("sync requested", extra=context)
    return SyncAccepted(request_id=request.event_id)
