"""An account's schedule as a resource: read, replace, change, remove."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from services.api import storage_schedules
from services.api.deps import ApiSettings, OwnedAccount, Session
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas_schedules import (
    CronScheduleIn,
    IntervalScheduleIn,
    OnceScheduleIn,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    ScheduleState,
)
from shared.db.schedule_rules import rule_of
from shared.db.tables import BrokerAccount, Schedule
from shared.events import utc_now
from shared.schedule_times import ScheduleRule
from shared.statements import STATEMENT_BROKER

router = APIRouter(tags=["schedules"], route_class=GuardedRoute)
log = logging.getLogger(__name__)

_SCHEDULE_IN: TypeAdapter[IntervalScheduleIn | CronScheduleIn | OnceScheduleIn] = TypeAdapter(ScheduleIn)
_KIND_FIELDS = {"interval": ("interval_seconds",), "cron": ("cron", "timezone"), "once": ("run_at",)}
PATH = "/accounts/{account_id}/schedule"


async def scheduled_account(account: OwnedAccount) -> BrokerAccount:
    """The caller's account, if it is one a schedule can sync (a 409 for a statement account)."""
    if account.broker == STATEMENT_BROKER:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"a {STATEMENT_BROKER!r} account is fed by uploaded statements and has no schedule: "
            f"upload one with POST /v1/accounts/{account.id}/statements",
        )
    return account


ScheduledAccount = Annotated[BrokerAccount, Depends(scheduled_account)]


def _no_schedule(account: BrokerAccount) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"this account has no schedule (it syncs on demand only): create one with PUT /v1{PATH}".replace(
            "{account_id}", str(account.id)
        ),
    )


def _state(schedule: Schedule, paused_by_operator: str | None, now: datetime) -> ScheduleState:
    if not schedule.enabled:
        return "paused"
    if schedule.next_run_at is None or (schedule.end_at is not None and schedule.end_at < now):
        return "ended"
    return "paused_by_operator" if paused_by_operator is not None else "active"


def schedule_out(schedule: Schedule, paused_by_operator: str | None, now: datetime) -> ScheduleOut:
    rule = rule_of(schedule)
    state = _state(schedule, paused_by_operator, now)
    return ScheduleOut(
        account_id=schedule.account_id,
        kind=rule.kind,
        interval_seconds=schedule.interval_seconds,
        cron=schedule.cron,
        timezone=schedule.timezone,
        run_at=schedule.run_at,
        enabled=schedule.enabled,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
        state=state,
        paused_by_operator=paused_by_operator,
        next_run_at=schedule.next_run_at,
        next_runs=[] if state in ("paused", "ended") else rule.preview(schedule.next_run_at, now=now),
        last_run_at=schedule.last_run_at,
        run_count=schedule.run_count,
    )


def _rule(
    body: IntervalScheduleIn | CronScheduleIn | OnceScheduleIn, minimum_s: int, now: datetime
) -> ScheduleRule:
    """The rule the body states, if it fires no more often than the deployment allows (422)."""
    rule = ScheduleRule(
        kind=body.kind,
        interval_seconds=body.interval_seconds if isinstance(body, IntervalScheduleIn) else None,
        cron=body.cron if isinstance(body, CronScheduleIn) else None,
        timezone=body.timezone if isinstance(body, CronScheduleIn) else None,
        run_at=body.run_at if isinstance(body, OnceScheduleIn) else None,
        start_at=body.start_at,
        end_at=body.end_at,
    )
    gap = rule.shortest_gap(now)
    if gap is not None and gap < timedelta(seconds=minimum_s):
        field = "interval_seconds" if rule.kind == "interval" else "cron"
        raise RequestValidationError(
            [
                {
                    "type": "too_frequent",
                    "loc": ("body", field),
                    "msg": f"syncs at most every {minimum_s} s (MIN_SYNC_INTERVAL_SECONDS); this schedule "
                    f"fires {int(gap.total_seconds())} s apart",
                }
            ]
        )
    return rule


async def _answer(session: Session, schedule: Schedule, account: BrokerAccount) -> ScheduleOut:
    pause = await storage_schedules.broker_pause(session, account.broker)
    return schedule_out(schedule, pause.reason if pause else None, utc_now())


@router.get(PATH, summary="Get the account's schedule", responses=error_responses(401, 404, 409))
async def read_schedule(account: ScheduledAccount, session: Session) -> ScheduleOut:
    """The schedule, its state, when it last fired and how often, and its next five fire times."""
    schedule = await storage_schedules.schedule_of(session, account.id)
    if schedule is None:
        raise _no_schedule(account)
    return await _answer(session, schedule, account)


@router.put(PATH, summary="Set the account's schedule", responses=error_responses(401, 404, 409))
async def put_schedule(
    body: ScheduleIn,
    account: ScheduledAccount,
    session: Session,
    settings: ApiSettings,
) -> ScheduleOut:
    """Replace the schedule (or give the account one): `kind` interval (every `interval_seconds`),
    cron (`cron` read in the IANA zone `timezone`) or once (at `run_at`); `enabled`, `start_at`,
    `end_at` for each. It fires first at the rule's first time from now; an interval schedule N
    seconds after its last run (now, if that is past). Run count and last run are kept."""
    now = utc_now()
    rule = _rule(body, settings.min_sync_interval_seconds, now)
    schedule = await storage_schedules.save_schedule(
        session, account.id, rule, enabled=body.enabled, now=now, recompute=True
    )
    log.info("schedule set", extra={"account_id": str(account.id), "kind": rule.kind})
    return await _answer(session, schedule, account)


def _current_fields(schedule: Schedule) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": schedule.kind,
        "enabled": schedule.enabled,
        "start_at": schedule.start_at,
        "end_at": schedule.end_at,
    }
    for name in _KIND_FIELDS.get(schedule.kind, ()):
        fields[name] = getattr(schedule, name)
    return fields


@router.patch(PATH, summary="Change the account's schedule", responses=error_responses(401, 404, 409))
async def patch_schedule(
    body: SchedulePatch, account: ScheduledAccount, session: Session, settings: ApiSettings
) -> ScheduleOut:
    """Change the fields the body names; the others keep their value (`start_at`/`end_at` null
    removes that bound). `{"enabled": false}` pauses, `{"enabled": true}` resumes: an interval
    schedule whose time passed meanwhile fires once, not once per missed tick. A new `kind` needs
    that kind's fields. The next fire is computed anew when the timing changes or on resuming."""
    schedule = await storage_schedules.schedule_of(session, account.id)
    if schedule is None:
        raise _no_schedule(account)
    current = _current_fields(schedule)
    given = body.model_dump(exclude_unset=True)
    if "kind" in given and given["kind"] != current["kind"]:
        current = {k: v for k, v in current.items() if k in ("enabled", "start_at", "end_at")}
    merged = current | given
    try:
        whole = _SCHEDULE_IN.validate_python(merged)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"][1:])} for e in exc.errors()]
        raise RequestValidationError(errors) from None
    now = utc_now()
    rule = _rule(whole, settings.min_sync_interval_seconds, now)
    resumed = whole.enabled and not schedule.enabled
    recompute = resumed or rule != rule_of(schedule)
    schedule = await storage_schedules.save_schedule(
        session, account.id, rule, enabled=whole.enabled, now=now, recompute=recompute
    )
    log.info("schedule changed", extra={"account_id": str(account.id), "fields": sorted(given)})
    return await _answer(session, schedule, account)


@router.delete(
    PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove the account's schedule",
    responses=error_responses(401, 404, 409),
)
async def delete_schedule(account: ScheduledAccount, session: Session) -> Response:
    """Remove the schedule: the account then syncs only on demand (POST /v1/accounts/{id}/sync),
    until a PUT gives it a schedule again."""
    if not await storage_schedules.delete_schedule(session, account.id):
        raise _no_schedule(account)
    log.info("schedule removed", extra={"account_id": str(account.id)})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
