"""The `holdings.changes` row an applied snapshot that moved a position writes to the outbox.

Serialised straight from the quantities, as the `HoldingsChanged` model would (a unit test holds them
equal): the quantities were validated when decoded or read, and building a validated `PositionChange`
per change and the model around them cost more than the rest of announcing (some 20 µs a snapshot).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from services.ledger import ids
from services.ledger.positions import QuantityChange
from shared import topics
from shared.events import utc_now


def outbox_row(
    *,
    account_id: uuid.UUID,
    portfolio_id: uuid.UUID,
    snapshot_id: uuid.UUID,
    taken_at: datetime,
    changes: list[QuantityChange],
    now: datetime,
) -> tuple[Any, ...]:
    """`BatchPlan.OUTBOX_COLUMNS` of the HoldingsChanged announcing `changes` (sorted by instrument)."""
    event_id = ids.uuid4()
    fields = {  # `HoldingsChanged`'s fields in its order, as `model_dump_json` writes them
        "event_id": event_id,
        "schema_version": 1,
        "occurred_at": utc_now(),
        "account_id": account_id,
        "snapshot_id": snapshot_id,
        "portfolio_id": portfolio_id,
        "taken_at": taken_at,
        "changes": [
            {"symbol": symbol, "exchange": exchange, "previous_quantity": was, "quantity": quantity}
            for (symbol, exchange), was, quantity in changes
        ],
        "correction": False,
    }
    return (event_id, topics.HOLDINGS_CHANGES, str(account_id), to_json(fields).decode(), now, snapshot_id)
