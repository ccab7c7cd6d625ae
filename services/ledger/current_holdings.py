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

from services.ledger.positions import Positions
from shared import topics
from shared.events import CurrentHoldings, CurrentPosition


def current_holdings(
    *,
    account_id: uuid.UUID,
    portfolio_id: uuid.UUID,
    snapshot_id: uuid.UUID,
    as_of: datetime,
    positions: Positions,
) -> CurrentHoldings:
    """The account's complete positions, sorted by instrument."""
    return CurrentHoldings(
        account_id=account_id,
        portfolio_id=portfolio_id,
        snapshot_id=snapshot_id,
        as_of=as_of,
        positions=tuple(
            CurrentPosition(
                symbol=symbol,
                exchange=exchange,
                currency=held.currency,
                quantity=held.quantity,
                average_price=held.average_price,
                last_price=held.last_price,
            )
            for (symbol, exchange), held in sorted(positions.items())
        ),
    )


def outbox_row(event: CurrentHoldings, now: datetime) -> tuple[Any, ...]:
    """`BatchPlan.OUTBOX_COLUMNS`; no snapshot: the HoldingsChanged beside it is the announcement."""
    return (event.event_id, topics.HOLDINGS_CURRENT, event.key, event.model_dump_json(), now, None)
