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
from operator import is_not
from typing import Any

from pydantic_core import to_json

from services.ledger import ids
from services.ledger.comparison import Hashed
from services.ledger.positions import HeldLike, InstrumentKey, Positions
from shared import topics
from shared.events import utc_now

# The start of a position's JSON, up to its quantity, by instrument and currency, as `to_json` writes
# its strings: an account's positions repeat with each of its changes, and three look-ups of each
# string's JSON (a function call each) cost more than one: a snapshot's positions are written in
# some 30% less time (13 against 18 µs for 20, measured alone).
_STARTS: dict[tuple[InstrumentKey, str], str] = {}
_STARTS_AT_MOST = 100_000  # some 10 MB

_APART = ',{"symbol":'  # between two fragments: inside one, `{"` can only start it (a string escapes `"`)


def outbox_row(
    *,
    account_id: uuid.UUID,
    portfolio_id: uuid.UUID,
    snapshot_id: uuid.UUID,
    as_of: datetime,
    positions: Positions,
    now: datetime,
    listed: str | None = None,
) -> tuple[Any, ...]:
    """`BatchPlan.OUTBOX_COLUMNS` of a CurrentHoldings of the account's complete positions, sorted by
    instrument. No snapshot: the HoldingsChanged beside it is the announcement.

    Serialised straight from the positions, as the model would (a unit test holds them equal): the
    numbers were validated when decoded or read, and building a validated model per position would
    cost more than the rest of a change (tens of microseconds each); even an unvalidated
    `model_construct` and `model_dump` of the event around them cost a third of the row. The
    positions, the last field, are written as text (a decimal as its `str()`, as `to_json` writes
    it): a dict of six values per position for `to_json` cost more than the rest of the row.
    `listed`: the positions' part as `listed` made it, if it did."""
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
    if listed is None:
        listed = _whole(positions)
    payload = f'{to_json(fields).decode()[:-1]},"positions":[{listed}]}}'
    return (event_id, topics.HOLDINGS_CURRENT, str(account_id), payload, now, None)


def listed(positions: Positions, before: Hashed | None) -> str:
    """The positions' part of their row: each position's JSON, sorted by instrument, joined. Those
    of the very objects the positions `before` held, at the same place, are taken from the text
    written for them (`Hashed.listed`), if it was: the decoder keeps an unchanged holding's object,
    and the same object under the same instrument is the same text."""
    text = None
    if before is not None and before.listed is not None:
        text = _spliced(before.positions, before.listed, positions)
    return _whole(positions) if text is None else text


def _whole(positions: Positions) -> str:
    return ",".join([_position(key, positions[key]) for key in sorted(positions)])


def _spliced(was: Positions, text: str, positions: Positions) -> str | None:
    """`text` (the fragments of `was`) with the fragments of the positions that are not the very
    objects `was` holds made again, each in place of the one it replaces (found by its start: an
    instrument's is in the text once); None unless the instruments are `was`'s in the same order, or
    if many changed. Compared by place (insertion order), not by instrument: a dict look-up hashes
    the instrument's tuple, a good part of what making the fragment again would cost."""
    if was is positions:
        return text
    if len(was) != len(positions):
        return None
    differ = list(map(is_not, positions.values(), was.values()))
    count = differ.count(True)
    if count * 4 > len(differ):  # every price moved, say: made whole, not spliced
        return None
    keys = list(positions)
    if keys != list(was):
        return None
    if count:
        then = list(was.values())
        place = -1
        for _ in range(count):
            place = differ.index(True, place + 1)
            key = keys[place]
            begin = text.index(_STARTS.get((key, then[place].currency)) or _start(key, then[place].currency))
            end = text.find(_APART, begin)
            made = _position(key, positions[key])
            text = f"{text[:begin]}{made}{text[end:]}" if end >= 0 else f"{text[:begin]}{made}"
    return text


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
