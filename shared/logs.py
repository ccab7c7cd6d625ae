"""Structured logs: one JSON object per line, with the context passed as `extra=`.

Plain stdlib logging, so library logs (aiokafka, uvicorn, sqlalchemy) come out the same way.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from shared.log_context import RunContextFilter

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RunContextFilter())  # the sync run being handled, on every line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # These report routine steps (coordinator joins, each migration plugin) at INFO: keep ours readable.
    for chatty in ("aiokafka", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
