"""A snapshot's positions against the account's, in one pass: what each position did (opened,
changed, unchanged, closed), and from it the versions, the moved instruments, the prices and the
content hash that applying it writes.

Why one pass: an applied snapshot usually changes one or two of its twenty positions, and each of
those things walked all twenty on its own (the review's two sets, `moved`, the versions, the prices,
the hash's lines), each the first or a later trip through the decoded holdings. An unchanged
position's content-hash line is taken from the account's previous one (`HashLines`) instead of
being made again (two `normalize()` and an f-string). Pure: nothing here writes or keeps anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from services.ledger.positions import HeldLike, InstrumentKey
from services.ledger.versions import PriceMemo, Prices, hash_line, version_row

# Each position's content-hash line, beside the very position object it was made for: a line is
# taken again only for that object (`is`), so it is never a line of something else the account held.
HashLines = dict[InstrumentKey, tuple[HeldLike, str]]


class Comparison(NamedTuple):
    same_instruments: bool  # exactly the instruments held before: the review has nothing to say
    moved: list[InstrumentKey]  # quantity changed, opened or closed; sorted
    versions: list[tuple[Any, ...]]  # `VERSION_COLUMNS`: what takes `before` to the new positions
    prices: list[tuple[Any, ...]]  # `PRICE_COLUMNS`: those that moved (the batch's pending not told)
    lines: HashLines  # the new positions'

    def content_hash_lines(self) -> list[str]:
        return [line for _, line in self.lines.values()]


def compare(
    account_id: uuid.UUID,
    before: Mapping[InstrumentKey, HeldLike],
    lines: HashLines,
    after: Mapping[InstrumentKey, HeldLike],
    *,
    at: datetime,
    source: str,
    memo: PriceMemo,
    pending: Prices,
) -> Comparison:
    """`after` (positions taken `at`, prices reported by `source`) against `before`, whose
    content-hash lines `lines` may hold. Prices: those that moved since the instrument's newest
    row, as the batch planned it (`pending`) or as committed (`memo`); an older time is always
    written (history)."""
    moved: list[InstrumentKey] = []
    versions: list[tuple[Any, ...]] = []
    prices: list[tuple[Any, ...]] = []
    made: HashLines = {}
    found = 0
    was_at = before.get
    line_of = lines.get
    committed = memo.last.get
    for key, now in after.items():
        was = was_at(key)
        line = None
        if was is None or was.quantity != now.quantity:
            moved.append(key)
            versions.append(version_row(account_id, key, at, now, now.quantity))
        elif (
            # Anything of a position but its price differs: a new version. One attribute at a time,
            # most likely to differ first: two tuples of them compared cost three times as long.
            was.average_price != now.average_price
            or was.isin != now.isin
            or was.currency != now.currency
            or was.asset_type != now.asset_type
        ):
            versions.append(version_row(account_id, key, at, now, now.quantity))
        elif (entry := line_of(key)) is not None and entry[0] is was and now.quantity and now.average_price:
            # Equal decimals normalize alike, but for a zero's sign (`-0` and `0`): a zero is made again.
            line = entry[1]
        if was is not None:
            found += 1
        made[key] = (now, line or hash_line(key, now))
        # `pending` is empty unless the batch planned prices (after a first batch, only those that
        # moved): then not looked in.
        last = (pending.get(key) if pending else None) or committed(key)
        if last is None or last[1] != now.last_price or at < last[0]:
            prices.append((*key, at, now.last_price, source))
    if found != len(before):
        for key, was in before.items():
            if key not in after:
                moved.append(key)
                versions.append(version_row(account_id, key, at, was, None))
    moved.sort()
    return Comparison(found == len(before) == len(after), moved, versions, prices, made)
