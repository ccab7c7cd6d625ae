"""Positions as versions and prices as one series per instrument: what an applied snapshot adds to
the history. Pure: the rows are decided here and written by `services.ledger.store`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.ledger.positions import HeldLike, InstrumentKey
from shared.events import Holding

VERSION_COLUMNS = (
    "account_id",
    "symbol",
    "exchange",
    "valid_from",
    "isin",
    "currency",
    "asset_type",
    "quantity",
    "average_price",
)
PRICE_COLUMNS = ("symbol", "exchange", "at", "price", "source")


def version_rows(
    account_id: uuid.UUID,
    valid_from: datetime,
    before: Mapping[InstrumentKey, HeldLike],
    after: Mapping[InstrumentKey, HeldLike],
    *,
    every: bool = False,
) -> list[tuple[Any, ...]]:
    """The versions that take the account from `before` to `after` at `valid_from`: opened and
    changed positions, and a closing version (no quantity) for each one gone. `every`: all of
    `after`'s positions, changed or not (a replay rewriting the versions of one time)."""
    rows = []
    # Anything of a position but its price differs: what a new version is written for. Compared one
    # attribute at a time, in the loop, most likely to differ first: comparing two tuples of them (an
    # `attrgetter` each), or calling a function to compare, cost three times as long, on each of a
    # snapshot's unchanged positions.
    get = before.get
    for key, now in after.items():
        was = get(key)
        if (
            every
            or was is None
            or was.quantity != now.quantity
            or was.average_price != now.average_price
            or was.isin != now.isin
            or was.currency != now.currency
            or was.asset_type != now.asset_type
        ):
            rows.append((account_id, *key, valid_from, *_version_values(now, now.quantity)))
    for key, was in before.items():
        if key not in after:
            rows.append((account_id, *key, valid_from, *_version_values(was, None)))
    return rows


def _version_values(held: HeldLike, quantity: Decimal | None) -> tuple[Any, ...]:
    return (held.isin, held.currency, str(held.asset_type), quantity, held.average_price)


def content_hash(holdings: Iterable[Holding]) -> bytes:
    """A digest of the holdings but their prices, whatever their order (half a SHA-256: 16 bytes
    a snapshot row, and still no collision in the life of the universe). Stored: the definition may
    not change (retention compares a snapshot's with the one before it, hashed by older code).
    `!s`: what the text would be anyway, but `format()` of a Decimal or an enum takes three times
    as long as `str()`."""
    lines = sorted(
        f"{h.symbol}\x1f{h.exchange}\x1f{h.isin!s}\x1f{h.currency}\x1f{h.asset_type!s}\x1f"
        f"{h.quantity.normalize()!s}\x1f{h.average_price.normalize()!s}"
        for h in holdings
    )
    return hashlib.sha256("\x1e".join(lines).encode()).digest()[:16]


Prices = dict[InstrumentKey, tuple[datetime, Decimal | None]]  # each instrument's newest row


class PriceMemo:
    """The last price written for each instrument, so that a price that did not move is not written
    again by the next account holding the instrument. Told only of committed rows; bounded."""

    def __init__(self, size: int = 200_000) -> None:
        self.last: Prices = {}
        self._size = size

    def remember(self, rows: Iterable[tuple[Any, ...]]) -> None:
        _note(self.last, rows)
        if len(self.last) > self._size:
            self.last.clear()  # rare: the cost is some prices written twice


def _note(last: Prices, rows: Iterable[tuple[Any, ...]]) -> None:
    for symbol, exchange, at, price, _ in rows:
        was = last.get((symbol, exchange))
        if was is None or at >= was[0]:
            last[(symbol, exchange)] = (at, price)


def price_rows(
    memo: PriceMemo,
    pending: Prices,
    at: datetime,
    positions: Mapping[InstrumentKey, HeldLike],
    source: str,
) -> list[tuple[Any, ...]]:
    """The prices of `positions` that moved since the instrument's newest row, as the batch planned
    it (`pending`, updated) or as committed (`memo`). An older time is always written: history."""
    rows = []
    committed = memo.last.get
    for key, held in positions.items():
        # `pending` is empty unless the batch planned prices (after a first batch, only those that
        # moved): then not looked in.
        last = (pending.get(key) if pending else None) or committed(key)
        if last is None or last[1] != held.last_price or at < last[0]:
            rows.append((*key, at, held.last_price, source))
    _note(pending, rows)
    return rows
