"""The sync run a log line concerns: bound in a context variable while a request, snapshot or failure
is handled, and added to every record by `RunContextFilter`, library logs included.

Context variables follow asyncio tasks: each task gets a copy at creation, so the fetcher's concurrent
syncs (one task each) never see each other's run.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from collections.abc import Iterator
from typing import Any

_RUN: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("sync_run", default=None)

__all__ = ["RunContextFilter", "bound_run"]


@contextlib.contextmanager
def bound_run(
    run_id: uuid.UUID, *, account_id: uuid.UUID | None = None, broker: str | None = None
) -> Iterator[None]:
    """Log records made inside carry `run_id` (and `account_id`, `broker` when given)."""
    fields = {"run_id": str(run_id)}
    if account_id is not None:
        fields["account_id"] = str(account_id)
    if broker is not None:
        fields["broker"] = broker
    token = _RUN.set(fields)
    try:
        yield
    finally:
        _RUN.reset(token)


class RunContextFilter(logging.Filter):
    """Adds the bound run's fields to a record, unless the call passed its own in `extra=`."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _RUN.get()
        if fields:
            attributes: dict[str, Any] = record.__dict__
            for name, value in fields.items():
                attributes.setdefault(name, value)
        return True
