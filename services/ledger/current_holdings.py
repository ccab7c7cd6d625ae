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
from services.ledger.positions import HeldLike, InstrumentKey, Positions
from shared import topics
from shared.events import utc_now

# The start of a position's JSON, up to its quantity, by instrument and currency, as `to_json` writes
# its strings: an account's positions repeat with each of its changes, and three look-ups of each
# string's JSON (a function call each) cost more than one: a snapshot's positions are written in
# some 30% less time (13 against 18 µs for 20, measured alone).
_STARTS: dict[tuple[InstrumentKey, str], str] = {}
_STARTS_AT_MOST = 100_000  # some 10 MB


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
    `model_construct` and `model_dump` of the event around them cost a third of the row. The
    positions, the last field, are written as text (a decimal as its `str()`, as `to_json` writes
    it): a dict of six values per position for `to_json` cost more than the rest of the row."""
    event_id = ids.uuid4()
    fields = {  # `CurrentHoldings`'s fields in its order, as `model_dump_json` writes them
        "event_id": event_id,
        "schema_version": 1,
        "occurred_at": utc_now(),
        "account_id": account_id,
        "portfolio_id": portfolio_id,
        "snapshot_id": snapshot_id,
        "as_of": as_of,
    }
    listed = ",".join([_position(key, positions[key]) for key in sorted(positions)])
    payload = f'{to_json(fields).decode()[:-1]},"positions":[{listed}]}}'
    return (event_id, topics.HOLDINGS_CURRENT, str(account_id), payload, now, None)


def _position(key: InstrumentKey, held: HeldLike) -> str:
    start = _STARTS.get((key, held.currency)) or _start(key, held.currency)
    last = held.last_price
    if last is None:
        return f'{start}{held.quantity!s}","average_price":"{held.average_price!s}","last_price":null}}'
    return f'{start}{held.quantity!s}","average_price":"{held.average_price!s}","last_price":"{last!s}"}}'


def _start(key: InstrumentKey, currency: str) -> str:
    if len(_STARTS) >= _STARTS_AT_MOST:
        _STARTS.clear()
    symbol, exchange = (to_json(text).decode() for text in key)
    start = _STARTS[(key, currency)] = (
        f'{{"symbol":{symbol},"exchange":{exchange},"currency":{to_json(currency).decode()},"quantity":"'
    )
    return start
