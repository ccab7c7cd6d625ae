"""Operators pause a whole broker (an outage there) and resume it. Guarded, as every admin route,
by the router's OperatorUser dependency."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, status

from services.api import storage_schedules
from services.api.deps import BrokerTypes, OperatorUser, Session, operator_user
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas_schedules import BrokerPauseIn, BrokerPauseOut, BrokerStateOut
from shared.db.tables import BrokerPause
from shared.events import utc_now
from shared.statements import STATEMENT_BROKER

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    route_class=GuardedRoute,
    dependencies=[Depends(operator_user)],
    responses=error_responses(403),
)
log = logging.getLogger(__name__)


def _pause_out(pause: BrokerPause | None) -> BrokerPauseOut | None:
    if pause is None:
        return None
    return BrokerPauseOut(reason=pause.reason, paused_by=pause.paused_by, paused_at=pause.paused_at)


def _fetched_broker(code: str, known: BrokerTypes) -> str:
    broker = known.get(code)
    if broker is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no broker {code[:40]!r}: GET /v1/admin/brokers lists them"
        )
    if code == STATEMENT_BROKER or not broker.fetched:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"{code!r} accounts are fed by uploaded statements: nothing to pause"
        )
    return code


@router.get("/brokers", summary="List the brokers and which are paused")
async def list_broker_states(session: Session, known: BrokerTypes) -> list[BrokerStateOut]:
    """Every broker this deployment knows, with the pause an operator put on it (who, when, why)."""
    pauses = await storage_schedules.broker_pauses(session)
    return [
        BrokerStateOut(code=t.code, name=t.name, paused=_pause_out(pauses.get(t.code)))
        for t in known.values()
    ]


@router.post("/brokers/{code}/pause", summary="Pause a broker", responses=error_responses(404, 409))
async def pause_broker(
    code: str, body: BrokerPauseIn, operator: OperatorUser, session: Session, known: BrokerTypes
) -> BrokerStateOut:
    """Request nothing from the broker until it is resumed: the scheduler skips its accounts (their
    due ticks wait, and fire once on resuming), "sync now" answers 409 with `reason`, and its
    accounts and schedules show `paused_by_operator: reason`. Pausing a paused broker replaces the
    reason."""
    broker = _fetched_broker(code, known)
    pause = await storage_schedules.pause_broker(
        session, broker, reason=body.reason, operator_id=operator.id, now=utc_now()
    )
    log.warning("broker paused by an operator", extra={"broker": broker, "operator_id": str(operator.id)})
    return BrokerStateOut(code=broker, name=known[broker].name, paused=_pause_out(pause))


@router.post("/brokers/{code}/resume", summary="Resume a paused broker", responses=error_responses(404, 409))
async def resume_broker(
    code: str, operator: OperatorUser, session: Session, known: BrokerTypes
) -> BrokerStateOut:
    """Requests flow again; each account's tick that came due meanwhile fires once. Resuming a
    broker that is not paused changes nothing."""
    broker = _fetched_broker(code, known)
    await storage_schedules.resume_broker(session, broker)
    log.warning("broker resumed by an operator", extra={"broker": broker, "operator_id": str(operator.id)})
    return BrokerStateOut(code=broker, name=known[broker].name, paused=None)
