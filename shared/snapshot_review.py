"""When a snapshot looks like a quiet failure rather than a real change, and is held for review.

One rule, used by the ledger (which holds such snapshots) and by the API (which tells whoever
uploads a statement, at once, that the ledger will hold it). Only instruments matter here, not
quantities: an instrument is (symbol, exchange).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from decimal import Decimal

InstrumentKey = tuple[str, str]  # (symbol, exchange)

# A complete snapshot that keeps fewer than this share of the instruments held before is suspicious,
# once the account holds at least MIN_POSITIONS_FOR_SHARE_RULE instruments (an empty one always is).
KEPT_SHARE_BELOW = Decimal("0.5")
MIN_POSITIONS_FOR_SHARE_RULE = 4


class SnapshotSource(enum.StrEnum):
    """Who said what the account holds, as the hold reason names it."""

    BROKER = "the broker"
    STATEMENT = "the statement"


def suspicion(
    before: Collection[InstrumentKey],
    after: Collection[InstrumentKey],
    *,
    source: SnapshotSource = SnapshotSource.BROKER,
) -> str | None:
    """Why `after` looks like an error rather than a real change, or None when it looks real."""
    if not before:
        return None
    says = "lists" if source is SnapshotSource.STATEMENT else "reported"
    if not after:
        return f"{source} {says} no holdings where the account held {len(before)} instrument(s)"
    kept = len(set(before) & set(after))
    if len(before) >= MIN_POSITIONS_FOR_SHARE_RULE and Decimal(kept) < KEPT_SHARE_BELOW * len(before):
        return f"{source} {says} {kept} of the {len(before)} instruments held before"
    return None


def confirms_held(after: Collection[InstrumentKey], held: Collection[InstrumentKey] | None) -> bool:
    """A suspicious snapshot that lists exactly the held snapshot's instruments confirms it: two
    syncs (or uploads) saying the same are taken as the truth, and both are applied."""
    return held is not None and set(after) == set(held)


def hold_reason(
    current: Collection[InstrumentKey],
    incoming: Collection[InstrumentKey],
    held: Collection[InstrumentKey] | None,
    *,
    source: SnapshotSource,
) -> str | None:
    """Why the ledger will hold `incoming`, given the account's current positions and its held
    snapshot's instruments (None if none is held); None when it will apply it."""
    reason = suspicion(current, incoming, source=source)
    if reason is None or confirms_held(incoming, held):
        return None
    return reason
