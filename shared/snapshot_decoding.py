"""The ledger's decoding of `holdings.snapshots`: msgspec first, the model for anything it refuses.

The ledger decodes a hundred thousand holdings a second, and pydantic spent some 85 µs on a snapshot
of twenty (bench/README.md, "Ledger"). msgspec decodes the same JSON into `Struct`s in a fraction
of that. What it gives is what the model gives, or nothing: every field is typed and constrained as
the model declares it, the model's own number check (`check_fit`) is run on the result, and a
message the lean path does not accept in every respect is decoded by the model, whose verdict and
reason stand (`tests/unit/test_snapshot_decoding_matches_model.py` proves both on the same inputs).

What the caller gets: a `HoldingSnapshot` built with `model_construct` (no validation: done here),
whose `holdings` and `trades` are NOT `Holding`s and `ReportedTrade`s but `SnapshotHolding` and
`SnapshotTrade` structs: the same field names, types and values, read-only. The ledger only reads
their attributes (`services.ledger.positions.HeldLike`); a snapshot the model decoded holds the
dataclasses. All of a lean snapshot's fields count as set (`model_fields_set`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import eq
from typing import TYPE_CHECKING, Annotated, cast

import msgspec
from msgspec import Meta, Struct
from msgspec.structs import force_setattr

from shared.events import (
    AssetType,
    Holding,
    HoldingSnapshot,
    ReportedTrade,
    TradeSide,
    decode_event,
)
from shared.numeric import check_fit

_Aware = Annotated[datetime, Meta(tz=True)]  # a naive time is refused, as `AwareDatetime` refuses it

if TYPE_CHECKING:
    _DecimalText = Decimal
else:
    # pydantic reads a decimal written as a JSON number through a float (`1.50` becomes 1.5), where
    # msgspec would keep its text: a number here decodes to a float that no value satisfies, so the
    # message is refused and left to the model. A string becomes a Decimal as the model makes it.
    _DecimalText = Decimal | Annotated[float, Meta(gt=0, lt=0)]


class SnapshotHolding(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A `Holding` as the lean path decodes it: its fields, constraints and defaults."""

    symbol: Annotated[str, Meta(min_length=1, max_length=64)]
    exchange: Annotated[str, Meta(max_length=32)] = ""
    isin: Annotated[str, Meta(max_length=12)] | None = None
    currency: Annotated[str, Meta(min_length=3, max_length=3)]
    asset_type: AssetType = AssetType.EQUITY
    quantity: _DecimalText
    average_price: _DecimalText
    last_price: _DecimalText | None = None


class SnapshotTrade(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A `ReportedTrade` as the lean path decodes it."""

    trade_id: Annotated[str, Meta(min_length=1, max_length=64)]
    symbol: Annotated[str, Meta(min_length=1, max_length=64)]
    exchange: Annotated[str, Meta(max_length=32)] = ""
    side: TradeSide
    quantity: _DecimalText
    price: _DecimalText
    currency: Annotated[str, Meta(min_length=3, max_length=3)]
    executed_at: _Aware


class _Snapshot(Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A `HoldingSnapshot`'s fields but its holdings. `event_id` and `occurred_at` are required here
    (the model makes them up), and a field none of these structs knows is refused (the model ignores
    it, but msgspec would skip it without the model parser's limit on nesting): such messages are
    left to the model."""

    event_id: uuid.UUID
    schema_version: int = 1
    occurred_at: _Aware
    account_id: uuid.UUID
    request_id: uuid.UUID
    broker: str
    taken_at: _Aware
    attempt: Annotated[int, Meta(ge=1)] = 1
    fetcher_id: str | None = None
    started_at: _Aware | None = None
    duration_ms: Annotated[int, Meta(ge=0)] | None = None
    trades: tuple[SnapshotTrade, ...] = ()
    replaces: uuid.UUID | None = None


class _Listed(_Snapshot, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A snapshot whose holdings are left as their JSON text (see `LeanSnapshots`)."""

    holdings: tuple[msgspec.Raw, ...]


class _Whole(_Snapshot, kw_only=True, forbid_unknown_fields=True, gc=False):
    """A snapshot with its holdings decoded."""

    holdings: tuple[SnapshotHolding, ...]


# msgspec rounds a time's fraction beyond microseconds, pydantic truncates it: a time written with
# more than six digits of fraction is the model's to decode (so is a message with any escape, which
# could spell such a time: the fetcher writes none but in the rare string that needs one).
_FINER_THAN_MICROSECONDS = re.compile(rb"\.[0-9]{7}(?<=:[0-9][0-9]\.[0-9]{7})")
_TRADE_PRICES = ("price",)


_LISTED = msgspec.json.Decoder(_Listed)
_WHOLE = msgspec.json.Decoder(_Whole)
_HOLDINGS = msgspec.json.Decoder(tuple[SnapshotHolding, ...])
# An account's latest holdings, each with its text (which holds the whole message it came in).
_Latest = tuple[tuple[msgspec.Raw, ...], tuple[SnapshotHolding, ...]]
_NONE: _Latest = ((), ())
_ACCOUNT = b'"account_id":"'


@dataclass
class LeanSnapshots:
    """How the ledger decodes `holdings.snapshots` (an `EventDecoder` for its consumer).

    A holding whose JSON is byte for byte the one the account's previous snapshot listed at the same
    place is not decoded again: that snapshot's decoded holding is reused, the very object. Between
    two syncs most positions do not change, and when their prices do not move either (out of
    trading hours; bench-ledger's workload) a snapshot of twenty holdings decodes in 0.6 of the time
    (38 against 63 µs); when every price moves, in 1.1 of it (holdings found changed are decoded in
    a second pass). The same bytes decode to the same values, so reusing them changes nothing of
    what is decoded; and the ledger, which keeps each account's latest holdings as its positions,
    then finds an unchanged position to be the same object (`is`). Kept to compare with: each
    account's latest message and holdings, some 250 bytes a holding, for `holdings_at_most`
    holdings (forgotten all at once when more).

    A holding's strings are shared with the earlier holdings' equal ones, as pydantic's string cache
    shares them: a string of its own per field cost 200 bytes a holding (peak RSS +25 MB over
    500,000 holdings). Bounded like pydantic's cache: forgotten all at once when full."""

    texts_at_most: int = 100_000
    holdings_at_most: int = 200_000
    _texts: dict[str | None, str | None] = field(default_factory=dict, init=False)
    _numbers: dict[Decimal, Decimal] = field(default_factory=dict, init=False)
    # By the account id's text in the message: a hint of where to look, read before decoding. Equal
    # texts decode to equal holdings whichever account they come from.
    _latest: dict[bytes, _Latest] = field(default_factory=dict, init=False)
    _whole: dict[bytes, int] = field(default_factory=dict, init=False)
    _latest_holdings: int = field(default=0, init=False)

    def decode(self, raw: bytes) -> HoldingSnapshot:
        """One message, decoded as `decode_event(HoldingSnapshot, raw)` decodes it: the same values,
        or the model's own `EventDecodeError`."""
        try:
            snapshot, holdings = self._checked(raw)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, RecursionError):
            # RecursionError: a holding nested deeper than msgspec skips over (as `Raw`) unparsed.
            return decode_event(HoldingSnapshot, raw)
        fields = msgspec.structs.asdict(snapshot)
        fields["holdings"] = holdings
        return HoldingSnapshot.model_construct(**fields)

    def _checked(self, raw: bytes) -> tuple[_Snapshot, tuple[SnapshotHolding, ...]]:
        if b"\\" in raw or _FINER_THAN_MICROSECONDS.search(raw):
            raise ValueError("an escape, or a time finer than microseconds")
        account = _account_text(raw)
        snapshot: _Listed | _Whole
        if self._whole.get(account):
            self._whole[account] -= 1
            snapshot = _WHOLE.decode(raw)
            holdings = self._decoded(snapshot.holdings)
        else:
            snapshot = _LISTED.decode(raw)
            holdings = self._holdings(account, snapshot.holdings)
        if snapshot.trades:
            check_fit(snapshot.trades, ReportedTrade._NUMBERS, field="trades", at_least_zero=_TRADE_PRICES)
            if not all(trade.quantity > 0 for trade in snapshot.trades):  # finite: checked just above
                raise ValueError("a trade's quantity is not above zero")
        return snapshot, holdings

    def _holdings(self, account: bytes, texts: tuple[msgspec.Raw, ...]) -> tuple[SnapshotHolding, ...]:
        """The holdings of `texts`: where one is the text the account's previous snapshot listed at
        the same place (brokers list holdings in an order of their own, the same each time), that
        snapshot's holding; the others decoded (in one call) and checked. Then they are the
        account's latest; unless none was as before, when its next `WHOLE_AFTER_CHANGE` snapshots
        are decoded whole (`_whole`): comparing costs a snapshot whose every price moved 1.15x the
        time of decoding it whole, and its prices move all day long."""
        was_texts, was = self._latest.get(account, _NONE)
        same = list(map(eq, texts, was_texts))  # as far as both go
        holdings: list[SnapshotHolding | None] = [*was[: len(same)], *[None] * (len(texts) - len(same))]
        new = [i for i, held in enumerate(holdings) if held is None or not same[i]]
        if new:
            decoded = self._decoded(_HOLDINGS.decode(b"[" + b",".join([texts[i] for i in new]) + b"]"))
            self._share_numbers(decoded)
            for i, holding in zip(new, decoded, strict=True):
                holdings[i] = holding
        made = cast(tuple[SnapshotHolding, ...], tuple(holdings))
        if was and len(new) == len(texts):
            self._latest.pop(account, None)
            self._whole[account] = WHOLE_AFTER_CHANGE
        else:
            self._remember(account, texts, made)
        return made

    def _decoded(self, holdings: tuple[SnapshotHolding, ...]) -> tuple[SnapshotHolding, ...]:
        check_fit(holdings, Holding._NUMBERS, field="holdings", at_least_zero=Holding._PRICES)
        self._share_texts(holdings)
        return holdings

    def _remember(
        self, account: bytes, texts: tuple[msgspec.Raw, ...], holdings: tuple[SnapshotHolding, ...]
    ) -> None:
        if self._latest_holdings > self.holdings_at_most:
            self._latest.clear()
            self._latest_holdings = 0
        if len(self._whole) > self.holdings_at_most // 20:
            self._whole.clear()
        self._latest_holdings += len(holdings) - len(self._latest.get(account, _NONE)[1])
        self._latest[account] = (texts, holdings)

    def _share_numbers(self, holdings: Iterable[SnapshotHolding]) -> None:
        """A quantity or last price equal to an earlier holding's, and written alike (`100` is not
        `100.0`), becomes that holding's decimal: the same instrument's price is the
        same for every account that holds it, and quantities are round numbers. A decimal is 104
        bytes, some 40% of a kept holding. Only the holdings a comparison found changed: an account
        decoded whole (every price moving) keeps no texts to compare with either, and sharing would
        cost it some 10 µs a snapshot."""
        if len(self._numbers) > self.texts_at_most:
            self._numbers.clear()
        shared = self._numbers.setdefault
        for h in holdings:
            quantity = shared(h.quantity, h.quantity)
            if quantity is not h.quantity and _written_alike(quantity, h.quantity):
                force_setattr(h, "quantity", quantity)
            if h.last_price is not None:
                price = shared(h.last_price, h.last_price)
                if price is not h.last_price and _written_alike(price, h.last_price):
                    force_setattr(h, "last_price", price)

    def _share_texts(self, holdings: Iterable[SnapshotHolding]) -> None:
        if len(self._texts) > self.texts_at_most:
            self._texts.clear()
        shared = self._texts.setdefault
        for h in holdings:
            force_setattr(h, "symbol", shared(h.symbol, h.symbol))
            force_setattr(h, "exchange", shared(h.exchange, h.exchange))
            force_setattr(h, "currency", shared(h.currency, h.currency))
            force_setattr(h, "isin", shared(h.isin, h.isin))


WHOLE_AFTER_CHANGE = 8


def _account_text(raw: bytes) -> bytes:
    """The text of the message's account id, as written (without escapes, no string holds a quote:
    this is the key's); empty when it has none."""
    at = raw.find(_ACCOUNT)
    return b"" if at < 0 else raw[at + len(_ACCOUNT) : raw.find(b'"', at + len(_ACCOUNT))]


def _written_alike(a: Decimal, b: Decimal) -> bool:
    """Of two equal decimals, whether `str()` writes them alike: the same exponent, and for a zero
    the same sign (`-0` equals `0`)."""
    return a.same_quantum(b) and a.is_signed() == b.is_signed()
