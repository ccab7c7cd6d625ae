"""Operators: users, accounts and sync runs across every user, outcomes per broker, stuck runs,
and acting on a run (request a stuck one again, retry a failed one)."""

from __future__ import annotations

import enum
import logging
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status

from services.api import paging, storage, storage_admin
from services.api.deps import ApiSettings, Bus, Session
from services.api.errors import unavailable
from services.api.operators import operator_router
from services.api.routes import error_responses
from services.api.schemas_admin import (
    AdminAccountOut,
    AdminAccountPage,
    AdminSyncRunOut,
    AdminSyncRunPage,
    AdminUserOut,
    AdminUserPage,
    BrokerHistory,
    BrokerHistoryOut,
    BrokerStats,
    BrokerStatsOut,
    OutcomeCounts,
    RunRequested,
)
from shared import topics
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import BrokerAccount, SyncRun
from shared.events import SyncRequested, SyncTrigger, utc_now
from shared.statements import STATEMENT_BROKER
from shared.stuck_runs import REQUESTED, rerequest_run, stuck

router = operator_router()
log = logging.getLogger(__name__)

USERS, ACCOUNTS, RUNS, STUCK = "admin-users", "admin-accounts", "admin-sync-runs", "admin-stuck-runs"


class RunStatus(enum.StrEnum):
    REQUESTED = "requested"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def account_state(
    broker: Annotated[
        str | None,
        Query(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$", description="Only this broker's."),
    ] = None,
    needs_reauth: Annotated[
        bool | None, Query(description="Only accounts whose credentials the broker rejected (or not).")
    ] = None,
    failing_at_least: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="Only accounts whose last N syncs or more failed.")
    ] = None,
    never_synced: Annotated[
        bool | None, Query(description="Only accounts never synced successfully (or only those synced).")
    ] = None,
) -> storage_admin.AccountState:
    return storage_admin.AccountState(
        broker=broker, needs_reauth=needs_reauth, failing_at_least=failing_at_least, never_synced=never_synced
    )


State = Annotated[storage_admin.AccountState, Depends(account_state)]
Page = Annotated[paging.PageRequest, paging.page_request(100)]


@router.get("/users", summary="Every user", responses=error_responses(400))
async def list_users(session: Session, state: State, page: Page) -> AdminUserPage:
    """Users, oldest first; with account filters, only users holding such an account."""
    rows = await storage_admin.users(session, state, after=page.after(USERS), limit=page.limit + 1)
    items, next_cursor = paging.page_of(
        USERS,
        rows,
        page.limit,
        position=lambda r: paging.Position(at=r[0].created_at, id=r[0].id),
        item=lambda r: AdminUserOut(
            id=r[0].id, email=r[0].email, role=r[0].role, created_at=r[0].created_at, accounts=r[1]
        ),
    )
    return AdminUserPage(items=items, next_cursor=next_cursor)


@router.get("/accounts", summary="Every user's accounts", responses=error_responses(400))
async def list_all_accounts(session: Session, state: State, page: Page) -> AdminAccountPage:
    """Broker accounts of every user, oldest first, by broker and state."""
    rows = await storage_admin.accounts(session, state, after=page.after(ACCOUNTS), limit=page.limit + 1)
    items, next_cursor = paging.page_of(
        ACCOUNTS,
        rows,
        page.limit,
        position=lambda r: paging.Position(at=r[0].created_at, id=r[0].id),
        item=_account_out,
    )
    return AdminAccountPage(items=items, next_cursor=next_cursor)


def _account_out(row: tuple[BrokerAccount, uuid.UUID]) -> AdminAccountOut:
    account, user_id = row
    fields = {name: getattr(account, name) for name in AdminAccountOut.model_fields if name != "user_id"}
    return AdminAccountOut(user_id=user_id, **fields)


def _run_out(row: tuple[SyncRun, str, uuid.UUID]) -> AdminSyncRunOut:
    run, broker, user_id = row
    return AdminSyncRunOut(
        id=run.id,
        account_id=run.account_id,
        user_id=user_id,
        broker=broker,
        trigger=run.trigger,
        status=run.status,
        requested_at=run.requested_at,
        rerequested_at=run.rerequested_at,
        finished_at=run.finished_at,
        failure_kind=run.failure_kind,
        failure_reason=run.failure_reason,
        attempts=run.attempts,
        next_attempt_at=run.next_attempt_at,
    )


def _run_position(row: tuple[SyncRun, str, uuid.UUID]) -> paging.Position:
    return paging.Position(at=row[0].requested_at, id=row[0].id)


@router.get("/sync-runs", summary="Every user's sync runs", responses=error_responses(400))
async def list_all_sync_runs(
    session: Session,
    state: State,
    page: Page,
    run_status: Annotated[
        RunStatus | None, Query(alias="status", description="Only runs in this status.")
    ] = None,
) -> AdminSyncRunPage:
    """Sync runs of every user, newest first, by their account's broker and state and by status."""
    rows = await storage_admin.sync_runs(
        session,
        state,
        status=run_status.value if run_status else None,
        after=page.after(RUNS),
        limit=page.limit + 1,
    )
    items, next_cursor = paging.page_of(RUNS, rows, page.limit, position=_run_position, item=_run_out)
    return AdminSyncRunPage(items=items, next_cursor=next_cursor)


@router.get(
    "/stuck-runs", summary="Runs requested long ago that nothing answered", responses=error_responses(400)
)
async def list_stuck_runs(
    session: Session, state: State, page: Page, settings: ApiSettings
) -> AdminSyncRunPage:
    """Runs still `requested` STUCK_RUN_AFTER_SECONDS after they were (last) requested, newest
    first. The scheduler requests them again; `POST /v1/admin/sync-runs/{id}/rerequest` does it now."""
    rows = await storage_admin.sync_runs(
        session,
        state,
        status=None,
        extra=stuck(utc_now(), settings.stuck_run_after_seconds),
        after=page.after(STUCK),
        limit=page.limit + 1,
    )
    items, next_cursor = paging.page_of(STUCK, rows, page.limit, position=_run_position, item=_run_out)
    return AdminSyncRunPage(items=items, next_cursor=next_cursor)


@router.get("/brokers/stats", summary="Successes and failures per broker")
async def broker_stats(session: Session) -> BrokerStatsOut:
    """Runs that ended, per broker, over the last 5 minutes, hour and day."""
    now = utc_now()
    counts = await storage_admin.broker_outcomes(session, now=now)
    return BrokerStatsOut(
        at=now,
        brokers=[
            BrokerStats(broker=broker, **{name: OutcomeCounts(**c) for name, c in windows.items()})
            for broker, windows in counts.items()
        ],
    )


@router.get("/brokers/history", summary="Successes and failures per broker, hour by hour")
async def broker_history(session: Session) -> BrokerHistoryOut:
    """Runs that ended, per broker, in each of the last 24 hours (oldest first): outcomes over time,
    for the operator page's chart."""
    now = utc_now()
    counts = await storage_admin.broker_outcomes_by_hour(session, now=now)
    first = now - timedelta(hours=storage_admin.HISTORY_HOURS)
    return BrokerHistoryOut(
        hours=[first + timedelta(hours=hour) for hour in range(storage_admin.HISTORY_HOURS)],
        at=now,
        brokers=[BrokerHistory(broker=broker, **outcomes) for broker, outcomes in counts.items()],
    )


@router.post(
    "/sync-runs/{run_id}/rerequest",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Request a run again",
    responses=error_responses(404, 409, 503),
)
async def rerequest_sync_run(run_id: uuid.UUID, session: Session, bus: Bus) -> RunRequested:
    """Publish a `requested` run's SyncRequested again, with the same id: a fetcher that got the first
    one after all makes it the same run. 409 unless the run is `requested` (an import cannot be)."""
    found = await storage_admin.run_with_account(session, run_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "sync run not found")
    if found[0].status != REQUESTED or found[1].broker == STATEMENT_BROKER:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"only a requested sync can be requested again; this one is {found[0].status}",
        )
    try:
        sent = await rerequest_run(session, bus, run_id, now=utc_now())
    except BusUnavailable:
        raise unavailable("the sync could not be requested again (message bus unavailable)") from None
    if not sent:
        raise HTTPException(status.HTTP_409_CONFLICT, "the run changed meanwhile: look at it again")
    log.info("sync run requested again by an operator", extra={"run_id": str(run_id)})
    return RunRequested(run_id=run_id)


@router.post(
    "/sync-runs/{run_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry a failed run",
    responses=error_responses(404, 409, 503),
)
async def retry_sync_run(run_id: uuid.UUID, session: Session, bus: Bus) -> RunRequested:
    """A new run (manual) for the account of a failed run. 409 unless the run failed, or when the
    account's credentials were rejected (the user must set new ones first)."""
    found = await storage_admin.run_with_account(session, run_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "sync run not found")
    run, account = found
    if run.status != RunStatus.FAILED or account.broker == STATEMENT_BROKER:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"only a failed sync can be retried; this one is {run.status}"
        )
    if account.needs_reauth:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the broker rejected this account's credentials: its owner must set new ones",
        )
    request = SyncRequested(
        account_id=account.id,
        broker=account.broker,
        trigger=SyncTrigger.MANUAL,
        credentials_ciphertext=await storage.stored_ciphertext(session, account.id),
    )
    await storage.record_sync_request(session, request)
    try:
        await bus.publish([OutgoingMessage.of(topics.sync_requests(account.broker), request)])
    except BusUnavailable:
        await storage.record_unpublished_request(session, request.event_id, now=utc_now())
        raise unavailable("the retry could not be requested (message bus unavailable): try again") from None
    log.info(
        "failed sync run retried by an operator",
        extra={"run_id": str(run_id), "retry_id": str(request.event_id)},
    )
    return RunRequested(run_id=request.event_id)
