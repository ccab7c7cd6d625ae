"""The events other services build on: immutable pydantic models, JSON on the wire.

Every event carries `event_id`, `schema_version` and `occurred_at`, and is keyed by `account_id`
so that one account's events stay in order. Evolution is compatible only: new optional fields;
a breaking change is a new topic version. `shared/schemas/*.json` is generated from these models.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass as dataclass_std
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Protocol, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import core_schema

from shared.numeric import check_fit

__all__ = [
    "HOLDINGS_CHANGES_EVENTS",
    "AccountRemoved",
    "AssetType",
    "CurrentHoldings",
    "CurrentPosition",
    "Event",
    "EventDecodeError",
    "EventDecoder",
    "FailureKind",
    "Holding",
    "HoldingSnapshot",
    "HoldingsChanged",
    "OneOf",
    "PositionChange",
    "ReportedTrade",
    "SnapshotAccepted",
    "SnapshotDismissed",
    "SyncFailed",
    "SyncRequested",
    "SyncTrigger",
    "TradeSide",
    "decode_event",
    "decode_on_topic",
    "utc_now",
]

# Stored as NUMERIC(38, 18): 18 decimal places, as crypto quantities and brokers' average prices carry
# more than money's usual 2-8. Each event checks all its numbers at once (`shared.numeric`).
_FITS = "A decimal string with at most 18 decimal places and 20 digits before the point."
Quantity = Annotated[Decimal, Field(description=_FITS)]
Price = Annotated[Decimal, Field(ge=0, description=_FITS)]


def _plain_from_json(source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    """From JSON, a holding's number is only made a Decimal: the snapshot checks all of its holdings'
    numbers at once (`check_fit`: finite, fits, a price not below zero). Pydantic's own checks of a
    value (`is_finite`, and a comparison for `ge`) each call back into Python: 40% of the time its
    sixty numbers took. Built in Python, a holding checks each number as declared."""
    declared = handler(source)
    plain = core_schema.decimal_schema(allow_inf_nan=True, metadata=declared.get("metadata"))  # its docs
    return core_schema.json_or_python_schema(json_schema=plain, python_schema=declared)


_HoldingQuantity = Annotated[Quantity, GetPydanticSchema(_plain_from_json)]
_HoldingPrice = Annotated[Price, GetPydanticSchema(_plain_from_json)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _ChecksOwnNumbers:
    """A part of an event checks its decimal fields `_NUMBERS` itself when built in Python (by an
    adapter, say); decoded from JSON, the event that carries it checks all of its parts' numbers at
    once, which costs a fraction of checking each (see `shared.numeric`). So the check is in the
    part's Python schema only: from JSON, pydantic does not call back into Python for each part (a
    validator that returned at once for JSON still cost a call, some 2 µs, per part)."""

    __slots__ = ()
    _NUMBERS: ClassVar[tuple[str, str, *tuple[str, ...]]]

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        checked = core_schema.no_info_after_validator_function(_own_numbers_fit, schema)
        return core_schema.json_or_python_schema(json_schema=schema, python_schema=checked)


def _own_numbers_fit(part: _ChecksOwnNumbers) -> _ChecksOwnNumbers:
    check_fit((part,), part._NUMBERS)
    return part


# The parts events hold many of (holdings, trades, position changes) are dataclasses with slots
# rather than models: the ledger decodes a hundred thousand holdings a second and keeps each account's
# latest as its positions, and a model instance also carries a dict and the set of fields given,
# together four times the size of the slots. (The decorator is spelled out on each: type checkers
# know a dataclass only by the decorator itself.)
_PART_CONFIG = ConfigDict(extra="ignore")


class Event(_Frozen):
    """Fields every event has. `extra="ignore"` lets old readers accept newer optional fields."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = 1
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    account_id: uuid.UUID

    @property
    def key(self) -> str:
        """The partition key: one account's events stay in order."""
        return str(self.account_id)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class SyncTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


class SyncRequested(Event):
    """A sync of one broker account was requested, by its schedule or by its owner."""

    broker: str = Field(min_length=1, max_length=32)
    trigger: SyncTrigger
    attempt: int = Field(default=1, ge=1)
    credentials_ciphertext: str | None = Field(
        default=None, description="Fernet token of the account's credentials; only fetchers hold the key."
    )
    run_id: uuid.UUID | None = Field(
        default=None,
        description="The sync run a retry belongs to; absent on a first attempt (the run is this event).",
    )
    not_before: AwareDatetime | None = Field(
        default=None, description="A retry is not to be sent to the broker before this time."
    )
    requested_by: uuid.UUID | None = Field(
        default=None, description="The user who asked for a manual sync; absent for a scheduled one."
    )
    scheduled_for: AwareDatetime | None = Field(
        default=None, description="The schedule's tick that fired a scheduled sync."
    )

    @property
    def sync_run_id(self) -> uuid.UUID:
        return self.run_id or self.event_id


class AssetType(enum.StrEnum):
    EQUITY = "equity"
    ETF = "etf"
    MUTUAL_FUND = "mutual_fund"
    BOND = "bond"
    CRYPTO = "crypto"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True, config=_PART_CONFIG)
class Holding(_ChecksOwnNumbers):
    """One instrument held in an account at the moment of the snapshot."""

    _NUMBERS: ClassVar[tuple[str, str, str]] = ("quantity", "average_price", "last_price")
    _PRICES: ClassVar[tuple[str, str]] = ("average_price", "last_price")

    symbol: str = Field(min_length=1, max_length=64)
    exchange: str = Field(default="", max_length=32)
    isin: str | None = Field(default=None, max_length=12)
    currency: str = Field(min_length=3, max_length=3)
    asset_type: AssetType = AssetType.EQUITY
    quantity: _HoldingQuantity
    average_price: _HoldingPrice
    last_price: _HoldingPrice | None = None


class TradeSide(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True, kw_only=True, config=_PART_CONFIG)
class ReportedTrade(_ChecksOwnNumbers):
    """A trade the broker reported itself (adapters that can list trades add them to the snapshot)."""

    _NUMBERS: ClassVar[tuple[str, str]] = ("quantity", "price")

    trade_id: str = Field(min_length=1, max_length=64, description="The broker's id: a trade is stored once.")
    symbol: str = Field(min_length=1, max_length=64)
    exchange: str = Field(default="", max_length=32)
    side: TradeSide
    quantity: Quantity = Field(gt=0)
    price: Price
    currency: str = Field(min_length=3, max_length=3)
    executed_at: AwareDatetime


class HoldingSnapshot(Event):
    """Everything an account held at `taken_at`, as its broker reported it."""

    request_id: uuid.UUID
    broker: str
    taken_at: AwareDatetime
    holdings: tuple[Holding, ...]
    attempt: int = Field(default=1, ge=1, description="Which attempt of the sync run produced it.")
    fetcher_id: str | None = Field(default=None, description="host:pid of the fetcher that took it.")
    started_at: AwareDatetime | None = Field(
        default=None, description="When the fetcher began this attempt (after any retry wait)."
    )
    duration_ms: int | None = Field(default=None, ge=0, description="How long the attempt took.")
    trades: tuple[ReportedTrade, ...] = Field(
        default=(), description="Trades the broker reported since the previous sync, if it reports any."
    )
    replaces: uuid.UUID | None = Field(
        default=None,
        description="Set by `portfolio-sync replay`: the id of the stored snapshot whose holdings these "
        "correct (its archived answer parsed again by a fixed adapter). The ledger replaces that "
        "snapshot's holdings, and the current positions if it is the account's current snapshot.",
    )

    @model_validator(mode="after")
    def _numbers_fit(self, info: ValidationInfo) -> Self:
        if info.mode == "json":
            check_fit(self.holdings, Holding._NUMBERS, field="holdings", at_least_zero=Holding._PRICES)
            check_fit(self.trades, ReportedTrade._NUMBERS, field="trades")
        return self


class FailureKind(enum.StrEnum):
    """Why a sync failed. New kinds may be added (see docs/events.md): a reader should treat a kind it
    does not know as a final failure, not reject the event."""

    AUTH = "auth"  # the broker rejected the credentials: the user must set new ones
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    INVALID_RESPONSE = "invalid_response"
    # No configured key opens the stored credentials: the operator's keys, not the user's credentials.
    UNREADABLE_CREDENTIALS = "unreadable_credentials"


class SyncFailed(Event):
    """A requested sync did not produce a snapshot; `kind` says whether trying again can help."""

    request_id: uuid.UUID
    broker: str
    kind: FailureKind
    reason: str = Field(max_length=2000)
    attempt: int = Field(default=1, ge=1)
    final: bool = Field(default=True, description="False when a retry is scheduled (see retry_at).")
    retry_at: AwareDatetime | None = None
    fetcher_id: str | None = Field(default=None, description="host:pid of the fetcher that tried.")
    started_at: AwareDatetime | None = Field(
        default=None, description="When the fetcher began this attempt (after any retry wait)."
    )
    duration_ms: int | None = Field(default=None, ge=0, description="How long the attempt took.")


@dataclass(frozen=True, slots=True, kw_only=True, config=_PART_CONFIG)
class PositionChange(_ChecksOwnNumbers):
    _NUMBERS: ClassVar[tuple[str, str]] = ("previous_quantity", "quantity")

    symbol: str
    exchange: str
    previous_quantity: Quantity
    quantity: Quantity


class HoldingsChanged(Event):
    """The ledger committed a snapshot that changed the account's current positions, or (with
    `correction`) a replay changed what an applied snapshot of the past changed."""

    snapshot_id: uuid.UUID
    portfolio_id: uuid.UUID
    taken_at: AwareDatetime
    changes: tuple[PositionChange, ...]
    correction: bool = Field(
        default=False,
        description="True: a replay corrected the holdings of this snapshot or of the one before it; "
        "`changes` are what it changed after all, replacing any earlier HoldingsChanged of the same "
        "`snapshot_id` (none may be left: a snapshot that changed nothing). `taken_at` is the "
        "snapshot's own, in the past: a subscriber that keeps current positions drops it, the "
        "CurrentHoldings of a corrected current snapshot says them.",
    )

    @model_validator(mode="after")
    def _numbers_fit(self, info: ValidationInfo) -> Self:
        if info.mode == "json":
            check_fit(self.changes, PositionChange._NUMBERS, field="changes")
        return self


@dataclass(frozen=True, slots=True, kw_only=True, config=_PART_CONFIG)
class CurrentPosition(_ChecksOwnNumbers):
    """One instrument an account holds now, as the ledger keeps it."""

    _NUMBERS: ClassVar[tuple[str, str, str]] = ("quantity", "average_price", "last_price")

    symbol: str
    exchange: str
    currency: str
    quantity: Quantity
    average_price: Price
    last_price: Price | None = None


class CurrentHoldings(Event):
    """An account's complete current positions, on the compacted `holdings.current`: the ledger
    writes one with each HoldingsChanged (same `snapshot_id`; `as_of` is its `taken_at`), and when a
    replay corrects the current snapshot. A subscriber bootstraps from these, then follows
    `holdings.changes` from after `as_of` (docs/events.md, "Bootstrap")."""

    portfolio_id: uuid.UUID
    snapshot_id: uuid.UUID = Field(description="The applied snapshot these positions are.")
    as_of: AwareDatetime = Field(
        description="When that snapshot was taken: every HoldingsChanged of the account with a "
        "`taken_at` up to this time is included, none later."
    )
    positions: tuple[CurrentPosition, ...] = Field(description="Every open position, by instrument.")

    @model_validator(mode="after")
    def _numbers_fit(self, info: ValidationInfo) -> Self:
        if info.mode == "json":
            check_fit(self.positions, CurrentPosition._NUMBERS, field="positions")
        return self


class SnapshotAccepted(Event):
    """The account's owner accepted a held snapshot: the ledger is to apply it after all."""

    event_type: Literal["snapshot_accepted"] = Field(
        default="snapshot_accepted",
        description="Tells this event apart from SnapshotDismissed on its topic (absent: this one).",
    )
    snapshot_id: uuid.UUID
    accepted_by: uuid.UUID


class SnapshotDismissed(Event):
    """The account's owner dismissed a held snapshot: it never becomes the account's positions."""

    event_type: Literal["snapshot_dismissed"] = Field(
        default="snapshot_dismissed", description="Tells this event apart from SnapshotAccepted on its topic."
    )
    snapshot_id: uuid.UUID
    dismissed_by: uuid.UUID


ACCOUNT_REMOVED_NAMESPACE = uuid.UUID("5a0c1f8e-2d7b-4c61-9f3e-8b1d6a4e7c20")


class AccountRemoved(Event):
    """The account was deleted (with everything recorded of it): subscribers are to forget it.

    Published on `holdings.changes`, keyed by the account like its HoldingsChanged, so it comes after
    them. `event_type` tells it apart from a HoldingsChanged on that topic. Its `event_id` is derived
    from the account id: a deletion retried after a crash republishes the same event id.
    """

    event_type: Literal["account_removed"] = Field(
        default="account_removed", description="Tells this event apart from HoldingsChanged on its topic."
    )
    portfolio_id: uuid.UUID

    @classmethod
    def of(cls, *, account_id: uuid.UUID, portfolio_id: uuid.UUID) -> AccountRemoved:
        event_id = uuid.uuid5(ACCOUNT_REMOVED_NAMESPACE, str(account_id))
        return cls(event_id=event_id, account_id=account_id, portfolio_id=portfolio_id)


class EventDecodeError(ValueError):
    """A message that is not a valid event of the expected type; the reason goes to the DLQ."""


E = TypeVar("E", bound=Event)


def decode_event(model: type[E], raw: bytes) -> E:
    """Parse and validate one message; raise EventDecodeError with a readable reason."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _decode_error(model.__name__, exc) from None


def _decode_error(name: str, exc: ValidationError) -> EventDecodeError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
    )
    return EventDecodeError(f"not a valid {name}: {problems}")


@dataclass_std(frozen=True)
class OneOf:
    """The events one topic carries, told apart by their `event_type`; a message without one is
    the first (the topic's original event, from before the others shared it)."""

    models: tuple[type[Event], ...]

    def model_for(self, raw: bytes) -> type[Event]:
        try:
            kind = json.loads(raw).get("event_type")
        except (ValueError, AttributeError):
            return self.models[0]  # not a JSON object: the first model's decoding says what is wrong
        for model in self.models:
            if model.model_fields.get("event_type") and model.model_fields["event_type"].default == kind:
                return model
        return self.models[0]

    def decode(self, raw: bytes) -> Event:
        return decode_event(self.model_for(raw), raw)


class EventDecoder(Protocol):
    """What a consumer decodes a topic's messages with, when not simply by a model's
    `decode_event`: a `OneOf`, or a lean decoder that gives what the model would
    (`shared.snapshot_decoding`)."""

    def decode(self, raw: bytes) -> Event: ...


def decode_on_topic(expected: type[Event] | EventDecoder, raw: bytes) -> Event:
    """Decode a message of a topic that carries `expected`."""
    return decode_event(expected, raw) if isinstance(expected, type) else expected.decode(raw)


HOLDINGS_CHANGES_EVENTS = OneOf((HoldingsChanged, AccountRemoved))
"""What `holdings.changes` carries: an AccountRemoved (told by its `event_type`), else a HoldingsChanged."""


EVENT_TYPES: tuple[type[Event], ...] = (
    SyncRequested,
    HoldingSnapshot,
    SyncFailed,
    HoldingsChanged,
    SnapshotAccepted,
    SnapshotDismissed,
    AccountRemoved,
    CurrentHoldings,
)
