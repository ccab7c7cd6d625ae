"""How failures become answers: a 4xx for what the client sent, a 503 for what is down, never a 500."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from services.api.storage import AlreadyExists
from services.api.storage_limits import QuotaReached
from shared.bus.port import BusUnavailable
from shared.db.errors import is_transient_db_error

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a 503 tells clients to wait: about as long as a Postgres restart or a Kafka leader change."""


def unavailable(detail: str) -> HTTPException:
    """A 503 that tells the client when to try again: for a route that says itself what failed."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(AlreadyExists, _already_exists)
    app.add_exception_handler(QuotaReached, _already_exists)
    app.add_exception_handler(BusUnavailable, _unavailable)
    # What may carry an outage; `_unavailable` asks `is_unavailable` whether this one does.
    for error in (DBAPIError, OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError):
        app.add_exception_handler(error, _unavailable)


def validation_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's errors minus the offending input: a rejected body may hold credentials."""
    errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
    return list(jsonable_encoder(errors))


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": validation_problems(exc)})


async def _already_exists(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database or the bus is unreachable (or restarting), not that the
    request was wrong: in its chain (SQLAlchemy wraps asyncpg's errors) is a transient error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BusUnavailable) or is_transient_db_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not is_unavailable(exc):
        raise exc  # a bug, not an outage: the server error it is
    what = "message bus" if isinstance(exc, BusUnavailable) else "database"
    log.warning(
        "answered 503: %s unavailable",
        what,
        extra={"path": request.url.path, "error": type(exc).__name__},
    )
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"the {what} is unavailable: try again in a few seconds"},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
