"""A snapshot's positions against the account's, in one pass: what each position did (opened,
changed, unchanged, closed), and from it the versions, the moved instruments, the prices and the
content hash that applying it writes.

Why one pass: an applied snapshot usually changes one or two of its twenty positions, and each of
those things walked all twenty on its own (the review's two sets, `moved`, the versions, the prices,
the hash's lines), each the first or a later trip through the decoded holdings. And the content
hash starts from the text hashed for the positions before (`Hashed`), with the lines of the
positions that changed taken out and put in: an unchanged position's line (two `normalize()` and
an f-string) is not made again, nor are twenty lines sorted. Planning bench-ledger's snapshots
(20 positions, one or two changing) took 0.86x the time and 0.79x the instructions with both
(`bench/README.md`). Pure: nothing here writes or keeps anything.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, insort
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from services.ledger.positions import HeldLike, InstrumentKey
from services.ledger.versions import LINES_APART, PriceMemo, Prices, hash_line, hash_text, version_row

Positions = Mapping[InstrumentKey, HeldLike]


class Hashed(NamedTuple):
    """Positions with the text their content hash digests (`versions.hash_text`): one string per
    account, some 50 bytes a position, kept beside the positions; and, once a `holdings.current`
    row listed them, its positions' text (`current_holdings.listed`, some 120 bytes a position):
    the next row takes from it the JSON of the positions that are still the same objects."""

    positions: Positions  # the very mapping the texts are of: they are used for that one alone (`is`)
    text: str
    listed: str | None = None


class Comparison(NamedTuple):
    same_instruments: bool  # exactly the instruments held before: the review has nothing to say
    moved: list[InstrumentKey]  # quantity changed, opened or closed; sorted
    versions: list[tuple[Any, ...]]  # `VERSION_COLUMNS`: what takes `before` to the new positions
    prices: list[tuple[Any, ...]]  # `PRICE_COLUMNS`: those that moved (the batch's pending not told)
    hashed: Hashed  # the new positions'
    reused: int  # positions that are the very objects held before (the decoder keeps unchanged ones)


def compare(
    account_id: uuid.UUID,
    before: Positions,
    hashed: Hashed | None,
    after: Positions,
    *,
    at: datetime,
    source: str,
    memo: PriceMemo,
    pending: Prices,
) -> Comparison:
    """`after` (positions taken `at`, prices reported by `source`) against `before`, whose
    content-hash text `hashed` may hold (if it is of `before`, not of positions before those). Prices: those
    that moved since the instrument's newest row, as the batch planned it (`pending`) or as
    committed (`memo`); an older time is always written (history)."""
    moved: list[InstrumentKey] = []
    versions: list[tuple[Any, ...]] = []
    prices: list[tuple[Any, ...]] = []
    leaving: list[InstrumentKey] = []  # positions whose content-hash line leaves the text
    coming: list[InstrumentKey] = []  # and whose line comes in
    found = 0
    same = 0  # positions that are the very objects held
    was_at = before.get
    committed = memo.last.get
    for key, now in after.items():
        was = was_at(key)
        if was is now:
            # The very object the account held (the decoder keeps an unchanged holding's): nothing
            # of it can differ, only its instrument's price may have moved since (another account's).
            found += 1
            same += 1
        elif was is None:
            moved.append(key)
            versions.append(version_row(account_id, key, at, now, now.quantity))
            coming.append(key)
        else:
            found += 1
            if was.quantity != now.quantity:
                moved.append(key)
                versions.append(version_row(account_id, key, at, now, now.quantity))
                leaving.append(key)
                coming.append(key)
            elif (
                # Anything of a position but its price differs: a new version. One attribute at a
                # time, most likely to differ first: two tuples of them compared cost three times as long.
                was.average_price != now.average_price
                or was.isin != now.isin
                or was.currency != now.currency
                or was.asset_type != now.asset_type
            ):
                versions.append(version_row(account_id, key, at, now, now.quantity))
                leaving.append(key)
                coming.append(key)
            elif not (now.quantity and now.average_price):
                # Equal decimals normalize alike, but for a zero's sign (`-0` and `0`).
                leaving.append(key)
                coming.append(key)
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
                leaving.append(key)
    moved.sort()
    text = _text(before, hashed, after, leaving, coming)
    listed = None
    if same == len(before) == len(after) and hashed is not None and hashed.positions is before:
        listed = hashed.listed  # every position the very object held: the same JSON
    same_instruments = found == len(before) == len(after)
    return Comparison(same_instruments, moved, versions, prices, Hashed(after, text, listed), same)


def _text(
    before: Positions,
    hashed: Hashed | None,
    after: Positions,
    leaving: list[InstrumentKey],
    coming: list[InstrumentKey],
) -> str:
    """The content-hash text of `after`: `before`'s with the lines of `leaving` (as they were) taken
    out and those of `coming` put in, where they sort; made whole if `before`'s is not known."""
    # The text splits back into its lines only if no line holds the separator.
    if (
        hashed is None
        or hashed.positions is not before
        or (hashed.text and hashed.text.count(LINES_APART) != len(before) - 1)
    ):
        return hash_text([hash_line(key, held) for key, held in after.items()])
    if not leaving and not coming:
        return hashed.text
    lines = hashed.text.split(LINES_APART) if hashed.text else []
    for key in leaving:
        del lines[bisect_left(lines, hash_line(key, before[key]))]
    for key in coming:
        insort(lines, hash_line(key, after[key]))
    return LINES_APART.join(lines)
