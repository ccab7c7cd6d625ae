"""Sync history, and "sync now"."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.api import storage
from services.api.deps import Bus, OwnedAccount, Session
from services.api.errors import RETRY_AFTER_SECONDS
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import SyncAccepted, SyncRunOut
from shared import topics
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.events import SyncRequested, SyncTrigger, utc_now
from shared.statements import STATEMENT_BROKER

router = APIRouter(tags=["sync"], route_class=GuardedRoute)
log = logging.getLogger(__name__)


@router.get(
    "/accounts/{account_id}/sync-runs",
    summary="Sync history of an account",
    responses=error_responses(401, 404),
)
async def list_sync_runs(
    account: OwnedAccount,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=500, description="Most runs to return.")] = 50,
) -> list[SyncRunOut]:
    """The account's sync runs, newest first, scheduled and manual alike."""
    runs = await storage.sync_runs(session, account.id, limit=limit)
    statuses = await storage.snapshot_statuses(session, [r.snapshot_id for r in runs if r.snapshot_id])
    return [
        SyncRunOut.model_validate(run).model_copy(
            update={"snapshot_status": statuses.get(run.snapshot_id) if run.snapshot_id else None}
        )
        for run in runs
    ]


@router.post(
    "/accounts/{account_id}/sync",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Sync an account now",
    responses=error_responses(401, 404, 409, 503),
)
async def sync_now(account: OwnedAccount, session: Session, bus: Bus) -> SyncAccepted:
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
    request = SyncRequested(
        account_id=account.id,
        broker=account.broker,
        trigger=SyncTrigger.MANUAL,
        credentials_ciphertext=await storage.stored_ciphertext(session, account.id),
    )
    await storage.record_sync_request(session, request)
    context = {"account_id": str(account.id), "request_id": str(request.event_id), "broker": account.broker}
    try:
        await bus.publish(
            [OutgoingMessage(topics.sync_requests(account.broker), request.key, request.to_bytes())]
        )
    except BusUnavailable:
        # The run must not stay "requested" forever; the caller may simply try again.
        log.exception("sync request not published", extra=context)
        await storage.record_unpublished_request(session, request.event_id, now=utc_now())
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the sync could not be requested (message bus unavailable): try again",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    log.info("sync requested", extra=context)
    return SyncAccepted(request_id=request.event_id)
