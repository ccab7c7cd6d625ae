"""Pure position arithmetic: what changed between two snapshots and which trades explain it.
(Whether a snapshot looks like a quiet failure is `shared.snapshot_review`: the API uses it too.)"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import NamedTuple, Protocol

from shared.events import Holding, PositionChange
from shared.snapshot_review import InstrumentKey as InstrumentKey  # re-exported: the ledger names it here

ZERO = Decimal(0)


class Held(NamedTuple):
    """One instrument as a stored snapshot holds it (a tuple: one per holding read back)."""

    quantity: Decimal
    average_price: Decimal
    last_price: Decimal | None
    currency: str
    isin: str | None
    asset_type: str


class HeldLike(Protocol):
    """What the arithmetic reads of a position: a `Held` from the database or a decoded `Holding`
    (the ledger keeps a snapshot's decoded holdings as the account's positions: slots, no copy)."""

    @property
    def quantity(self) -> Decimal: ...

    @property
    def average_price(self) -> Decimal: ...

    @property
    def last_price(self) -> Decimal | None: ...

    @property
    def currency(self) -> str: ...

    @property
    def isin(self) -> str | None: ...

    @property
    def asset_type(self) -> str: ...


Positions = Mapping[InstrumentKey, HeldLike]


def positions_of(holdings: Iterable[Holding]) -> dict[InstrumentKey, HeldLike]:
    """The snapshot's holdings by instrument; the decoded objects themselves, nothing copied."""
    return {(h.symbol, h.exchange): h for h in holdings}


def moved(before: Positions, after: Positions) -> list[InstrumentKey]:
    """The instruments whose quantity differs, sorted; usually a few of many, so found cheaply."""
    keys = [k for k, now in after.items() if (was := before.get(k)) is None or was.quantity != now.quantity]
    keys += [k for k in before if k not in after]
    return sorted(keys)


QuantityChange = tuple[InstrumentKey, Decimal, Decimal]  # instrument, previous quantity, quantity


def quantity_changes(
    before: Positions, after: Positions, keys: list[InstrumentKey] | None = None
) -> list[QuantityChange]:
    """Opened, resized and closed positions, sorted by instrument; unchanged ones are left out."""
    changes = []
    for key in moved(before, after) if keys is None else keys:
        was = before[key].quantity if key in before else ZERO
        now = after[key].quantity if key in after else ZERO
        if was != now:
            changes.append((key, was, now))
    return changes


def position_changes(
    before: Positions, after: Positions, keys: list[InstrumentKey] | None = None
) -> list[PositionChange]:
    """`quantity_changes` as the parts of a HoldingsChanged."""
    return [
        PositionChange(symbol=key[0], exchange=key[1], previous_quantity=was, quantity=now)
        for key, was, now in quantity_changes(before, after, keys)
    ]


class TradeKind(enum.StrEnum):
    OPENING = "opening"  # a position appears (including the first snapshot's holdings)
    BUY = "buy"  # an open position grows
    SELL = "sell"  # an open position shrinks but stays open
    CLOSING = "closing"  # a position goes to zero


class PriceSource(enum.StrEnum):
    AVERAGE_COST = "average_cost"  # solved from the change of the broker's average price
    LAST_PRICE = "last_price"  # the market price the snapshot reported: an estimate
    REPORTED = "reported"  # the broker reported the trade itself


class DerivedTrade(NamedTuple):
    """A tuple: made by the thousand as a batch's first snapshots open every position, and a frozen
    dataclass's `__init__` (a Python frame setting each field) cost four times as much."""

    key: InstrumentKey
    kind: TradeKind
    quantity: Decimal  # always positive; `kind` says the direction
    price: Decimal | None
    price_source: PriceSource | None
    currency: str


def derive_trades(
    before: Positions,
    after: Positions,
    *,
    reported: Mapping[InstrumentKey, Decimal] | None = None,
    keys: list[InstrumentKey] | None = None,
) -> list[DerivedTrade]:
    """The trades that explain the move from `before` to `after`, net of trades the broker reported.

    `reported` is the signed quantity (buys positive) of reported trades between the two snapshots:
    only the part of a change they do not explain is derived, so a reported trade is never doubled.
    """
    trades = []
    candidates = moved(before, after) if keys is None else keys
    if reported:
        candidates = sorted(set(candidates) | reported.keys())
    for key in candidates:
        was, now = before.get(key), after.get(key)
        old_qty = was.quantity if was else ZERO
        new_qty = now.quantity if now else ZERO
        delta = new_qty - old_qty - (reported or {}).get(key, ZERO)
        if delta == 0:
            continue
        currency = (now or was).currency  # type: ignore[union-attr]  # one of them exists
        kind = _kind(old_qty, new_qty, delta)
        price, source = _estimate_price(was, now, delta)
        trades.append(DerivedTrade(key, kind, abs(delta), price, source, currency))
    return trades


_CENT_MILLIONTHS = Decimal("0.00000001")  # a derived price's precision


def _kind(old_qty: Decimal, new_qty: Decimal, delta: Decimal) -> TradeKind:
    if old_qty == 0:
        return TradeKind.OPENING
    if new_qty == 0:
        return TradeKind.CLOSING
    return TradeKind.BUY if delta > 0 else TradeKind.SELL


def _estimate_price(
    was: HeldLike | None, now: HeldLike | None, delta: Decimal
) -> tuple[Decimal | None, PriceSource | None]:
    if delta > 0 and now is not None:
        # Buying moves the average cost: new_avg * new_qty = old_avg * old_qty + price * delta.
        old_cost = was.average_price * was.quantity if was else ZERO
        price = (now.average_price * now.quantity - old_cost) / delta
        if price > 0:
            return price.quantize(_CENT_MILLIONTHS), PriceSource.AVERAGE_COST
    # Selling leaves the average cost unchanged: the market price is the best estimate there is.
    market = (now.last_price if now else None) or (was.last_price if was else None)
    return (market, PriceSource.LAST_PRICE) if market is not None else (None, None)
