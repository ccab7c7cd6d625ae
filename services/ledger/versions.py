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
            rows.append(version_row(account_id, key, valid_from, now, now.quantity))
    for key, was in before.items():
        if key not in after:
            rows.append(version_row(account_id, key, valid_from, was, None))
    return rows


def version_row(
    account_id: uuid.UUID, key: InstrumentKey, valid_from: datetime, held: HeldLike, quantity: Decimal | None
) -> tuple[Any, ...]:
    """`VERSION_COLUMNS` of a position as `held` says it from `valid_from`: closed if no `quantity`."""
    return (
        account_id,
        *key,
        valid_from,
        held.isin,
        held.currency,
        str(held.asset_type),
        quantity,
        held.average_price,
    )


def content_hash(holdings: Iterable[Holding]) -> bytes:
    """A digest of the holdings but their prices, whatever their order (half a SHA-256: 16 bytes
    a snapshot row, and still no collision in the life of the universe). Stored: the definition may
    not change (retention compares a snapshot's with the one before it, hashed by older code)."""
    return content_digest(hash_text([hash_line((h.symbol, h.exchange), h) for h in holdings]))


def hash_line(key: InstrumentKey, held: HeldLike) -> str:
    """A position's part of the content hash. `!s`: what the text would be anyway, but `format()`
    of a Decimal or an enum takes three times as long as `str()`."""
    return (
        f"{key[0]}\x1f{key[1]}\x1f{held.isin!s}\x1f{held.currency}\x1f{held.asset_type!s}\x1f"
        f"{held.quantity.normalize()!s}\x1f{held.average_price.normalize()!s}"
    )


LINES_APART = "\x1e"


def hash_text(lines: list[str]) -> str:
    """What `content_hash` digests of the holdings whose `hash_line`s these are (sorted in place)."""
    lines.sort()
    return LINES_APART.join(lines)


def content_digest(text: str) -> bytes:
    """`content_hash` of the holdings whose `hash_text` this is."""
    return hashlib.sha256(text.encode()).digest()[:16]


Prices = dict[InstrumentKey, tuple[datetime, Decimal | None]]  # each instrument's newest row


class PriceMemo:
    """The last price written for each instrument, so that a price that did not move is not written
    again by the next account holding the instrument. Told only of committed rows; bounded."""

    def __init__(self, size: int = 200_000) -> None:
        self.last: Prices = {}
        self._size = size

    def remember(self, rows: Iterable[tuple[Any, ...]]) -> None:
        note_prices(self.last, rows)
        if len(self.last) > self._size:
            self.last.clear()  # rare: the cost is some prices written twice


def note_prices(last: Prices, rows: Iterable[tuple[Any, ...]]) -> None:
    """Keep in `last` each instrument's newest of `rows` (`PRICE_COLUMNS`)."""
    for symbol, exchange, at, price, _ in rows:
        was = last.get((symbol, exchange))
        if was is None or at >= was[0]:
            last[(symbol, exchange)] = (at, price)
