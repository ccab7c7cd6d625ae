"""Probes: liveness (no I/O) and readiness (the database answers)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.api.deps import Context
from services.api.errors import unavailable
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import Health
from shared.db.errors import is_transient_db_error

router = APIRouter(tags=["health"], route_class=GuardedRoute)
log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 5.0


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and serving; touches nothing else."""
    return Health(status="ok")


@router.get("/readyz", summary="Readiness", responses=error_responses(503))
async def readyz(context: Context) -> Health:
    """Ready when the database answers `select 1`; 503 with the reason otherwise."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), context.resources.engine.connect() as connection:
            await connection.execute(text("select 1"))
    except Exception as exc:
        if not (isinstance(exc, SQLAlchemyError) or is_transient_db_error(exc)):
            raise
        log.warning("not ready: database unavailable", extra={"error": type(exc).__name__})
        raise unavailable(f"database unavailable ({type(exc).__name__})") from None
    return Health(status="ready")
