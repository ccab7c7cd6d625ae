"""Pure position arithmetic: what changed between the current positions and a new snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from shared.events import Holding, PositionChange

InstrumentKey = tuple[str, str]  # (symbol, exchange)


def position_changes(
    current: Mapping[InstrumentKey, Decimal], holdings: Iterable[Holding]
) -> list[PositionChange]:
    """Opened, resized and closed positions, sorted by instrument; unchanged ones are left out."""
    new = {(h.symbol, h.exchange): h.quantity for h in holdings}
    changes = []
    for key in sorted(current.keys() | new.keys()):
        before, after = current.get(key, Decimal(0)), new.get(key, Decimal(0))
        if before != after:
            changes.append(
                PositionChange(symbol=key[0], exchange=key[1], previous_quantity=before, quantity=after)
            )
    return changes
