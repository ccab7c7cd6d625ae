"""The `holdings.current` row an account's change writes to the outbox beside its HoldingsChanged.

Built from the ledger's in-memory current positions (what the plan has just made the account's),
never from the history tables. It goes through the same outbox, in the same transaction, under the
same key: so it has the outbox's guarantees (at least once, per account in commit order), and a
subscriber reading the compacted topic finds each account's latest positions. The tombstone when an
account is removed is the API's (`services.api.removal`): it is the one that deletes the account.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from services.ledger import ids
from services.ledger.positions import Positions
from shared import topics
from shared.events import utc_now


def outbox_row(
    *,
    account_id: uuid.UUID,
    portfolio_id: uuid.UUID,
    snapshot_id: uuid.UUID,
    as_of: datetime,
    positions: Positions,
    now: datetime,
) -> tuple[Any, ...]:
    """`BatchPlan.OUTBOX_COLUMNS` of a CurrentHoldings of the account's complete positions, sorted by
    instrument. No snapshot: the HoldingsChanged beside it is the announcement.

    Serialised straight from the positions, as the model would (a unit test holds them equal): the
    numbers were validated when decoded or read, and building a validated model per position would
    cost more than the rest of a change (tens of microseconds each); even an unvalidated
    `model_construct` and `model_dump` of the event around them cost a third of the row."""
    event_id = ids.uuid4()
    fields = {  # `CurrentHoldings`'s fields in its order, as `model_dump_json` writes them
        "event_id": event_id,
        "schema_version": 1,
        "occurred_at": utc_now(),
        "account_id": account_id,
        "portfolio_id": portfolio_id,
        "snapshot_id": snapshot_id,
        "as_of": as_of,
        "positions": [
            {
                "symbol": symbol,
                "exchange": exchange,
                "currency": held.currency,
                "quantity": held.quantity,
                "average_price": held.average_price,
                "last_price": held.last_price,
            }
            for (symbol, exchange), held in sorted(positions.items())
        ],
    }
    return (event_id, topics.HOLDINGS_CURRENT, str(account_id), to_json(fields).decode(), now, None)
