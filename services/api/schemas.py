"""Request and response bodies. Decimals go out as JSON strings, never floats."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.api.consolidation import market_value
from services.api.input_types import NO_CONTROL_CHARACTERS
from shared.numeric import EXACT
from shared.statements import STATEMENT_BROKER, StatementFormat

BROKER_CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
MIN_SYNC_INTERVAL_SECONDS = 60
MAX_SYNC_INTERVAL_SECONDS = 366 * 24 * 3600
# No whitespace, control characters or lone surrogates anywhere (Postgres refuses NUL; SQLite would
# store it), the CLI's and invites' addresses included: they all pass through normal_email.
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
_EMAIL = re.compile(rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$")


def decimal_text(value: Decimal) -> str:
    """Plain notation ("100", not "1E+2"), without trailing zeros, every digit kept:
    `format(value.normalize(EXACT), "f")` ("0" for any zero), from `str(value)` when that is plain
    already (stored amounts are): a few hundred of these make a portfolio's holdings, and trimming
    text is 4x faster than normalize."""
    text = str(value)
    if "E" in text:
        return "0" if value.is_zero() else format(value.normalize(EXACT), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


DecimalText = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NO_CONTROL_CHARACTERS
]


class _Request(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- users -------------------------------------------------------------------------------------


class UserCreate(_Request):
    email: Annotated[str, StringConstraints(max_length=320), NO_CONTROL_CHARACTERS] = Field(
        examples=["ada@example.com"]
    )
    invite_code: str | None = Field(
        default=None,
        max_length=200,
        description="An operator's invite code: required when sign-up is by invitation (SIGNUP_MODE=invite).",
    )

    @field_validator("email")
    @classmethod
    def _plausible_email(cls, value: str) -> str:
        return normal_email(value)


def normal_email(value: str) -> str:
    """The address as stored (trimmed, lower case); ValueError if it does not look like one."""
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise ValueError("email must look like name@example.com")
    return email


class UserOut(_Response):
    id: uuid.UUID
    email: str
    role: Literal["user", "operator"] = Field(description="`operator`: may also use the `/v1/admin` routes.")
    created_at: AwareDatetime


class UserCreated(_Response):
    id: uuid.UUID
    email: str
    api_token: str = Field(
        description="Send as `Authorization: Bearer <api_token>`. Shown only once: store it."
    )


# --- portfolios --------------------------------------------------------------------------------


class PortfolioCreate(_Request):
    name: Name = Field(examples=["Retirement"])


class PortfolioUpdate(_Request):
    """Partial: a field left out keeps its value."""

    name: Name | None = Field(default=None, examples=["Retirement"])
    active: bool | None = Field(
        default=None, description="False: the portfolio's accounts are not synced on schedule."
    )


class PortfolioOut(_Response):
    id: uuid.UUID
    name: str
    created_at: AwareDatetime
    active: bool = Field(description="False: the portfolio's accounts are not synced on schedule.")


class PortfolioPage(BaseModel):
    items: list[PortfolioOut] = Field(description="Oldest first (by created_at, then id).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last page.")


# --- accounts ----------------------------------------------------------------------------------

CredentialKey = Annotated[str, StringConstraints(min_length=1, max_length=64), NO_CONTROL_CHARACTERS]
CredentialValue = Annotated[SecretStr, Field(max_length=4096)]


class AccountCreate(_Request):
    broker: str = Field(
        description=(
            "The code of one of the brokers `GET /v1/brokers` lists: `sim` (the simulated broker), "
            "`zerodha`, `upstox`, `dhan`, `alpaca`, `csv` (statement import), or a plug-in's."
        ),
        examples=["sim", "zerodha", "csv"],
        json_schema_extra={"pattern": BROKER_CODE.pattern},
    )
    label: Name = Field(examples=["Main trading account"])
    credentials: dict[CredentialKey, CredentialValue] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description=(
            "The broker credentials, as for `PUT /v1/accounts/{id}/credentials`, stored with the account "
            "so that its first sync already has them. Encrypted, write-only."
        ),
    )
    sync_interval_seconds: int | None = Field(
        default=None,
        ge=MIN_SYNC_INTERVAL_SECONDS,
        le=MAX_SYNC_INTERVAL_SECONDS,
        description=(
            "Seconds between scheduled syncs; the server's default when left out. "
            f"Not for broker `{STATEMENT_BROKER}`: those accounts have no schedule."
        ),
    )

    @field_validator("broker")
    @classmethod
    def _broker_code(cls, value: str) -> str:
        if not BROKER_CODE.match(value):
            raise ValueError(
                f"broker must be a lowercase code such as 'zerodha' or 'interactive_brokers' "
                f"(a letter, then 1-31 lowercase letters, digits or underscores), not {value[:40]!r}"
            )
        return value

    @model_validator(mode="after")
    def _statement_accounts_have_no_schedule(self) -> Self:
        if self.broker == STATEMENT_BROKER and self.sync_interval_seconds is not None:
            raise ValueError(
                f"a {STATEMENT_BROKER!r} account is fed by uploaded statements and has no schedule: "
                "leave out sync_interval_seconds"
            )
        if self.broker == STATEMENT_BROKER and self.credentials is not None:
            raise ValueError(
                f"a {STATEMENT_BROKER!r} account is fed by uploaded statements and has no credentials: "
                "leave out credentials"
            )
        return self

    def plaintext_credentials(self) -> dict[str, str] | None:
        if self.credentials is None:
            return None
        return {key: value.get_secret_value() for key, value in self.credentials.items()}


class HeldSnapshotOut(_Response):
    id: uuid.UUID
    taken_at: AwareDatetime
    reason: str | None = Field(
        description="Why the ledger held it, e.g. the broker reported no holdings where there were some, "
        "or the statement lists 1 of the 5 instruments held before."
    )
    holdings_count: int


class AccountOut(_Response):
    id: uuid.UUID
    portfolio_id: uuid.UUID
    broker: str
    label: str
    created_at: AwareDatetime
    sync_interval_seconds: int | None = Field(
        description="Seconds between scheduled syncs; None if the account has no schedule or one of "
        "another kind (see schedule_kind and GET /v1/accounts/{id}/schedule)."
    )
    sync_enabled: bool = Field(description="Whether the account has a schedule that is not paused.")
    next_run_at: AwareDatetime | None = Field(description="The next scheduled sync; None if none is coming.")
    schedule_kind: Literal["interval", "cron", "once"] | None = Field(
        description="The kind of the account's schedule (GET /v1/accounts/{id}/schedule has all of it); "
        "None if it has none and syncs only on demand."
    )
    paused_by_operator: str | None = Field(
        description="Why an operator paused the account's broker (an outage there): nothing is requested "
        "from it, scheduled or on demand, until it is resumed. None when it is not paused."
    )
    last_attempt_at: AwareDatetime | None
    last_success_at: AwareDatetime | None
    consecutive_failures: int
    needs_reauth: bool = Field(description="The broker rejected the credentials: set new ones to sync again.")
    last_error: str | None
    positions_as_of: AwareDatetime | None = Field(
        description="When the snapshot behind the current positions was taken; None before the first."
    )
    has_credentials: bool = Field(description="Whether credentials are stored; they are never returned.")
    held_snapshot: HeldSnapshotOut | None = Field(
        description=(
            "A snapshot that looked like an error (all or most positions gone, no error reported; for a "
            "csv account, a statement leaving out most of them) and did not replace the current "
            "positions. The next sync or upload listing the same instruments confirms it (it applies) or "
            "contradicts it (it is dismissed); or accept it with "
            "POST /v1/accounts/{id}/held-snapshot/accept. None when nothing is held."
        )
    )


class AccountUpdate(_Request):
    """Partial: a field left out keeps its value."""

    label: Name | None = Field(default=None, examples=["Main trading account"])


class AccountPage(BaseModel):
    items: list[AccountOut] = Field(description="Oldest first (by created_at, then id).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last page.")


class CredentialsIn(_Request):
    credentials: dict[CredentialKey, CredentialValue] = Field(
        min_length=1,
        max_length=32,
        description=(
            "What the broker needs to sign in: the `credential_fields` that `GET /v1/brokers` lists "
            "for the account's broker (e.g. zerodha: api_key and access_token). Encrypted, write-only."
        ),
        examples=[{"api_key": "...", "access_token": "..."}],
    )

    def plaintext(self) -> dict[str, str]:
        return {key: value.get_secret_value() for key, value in self.credentials.items()}


# --- holdings ----------------------------------------------------------------------------------


class _HoldingLine(_Response):
    """One instrument and how much of it, as a snapshot lists it."""

    symbol: str
    exchange: str
    isin: str | None
    currency: str
    asset_type: str
    quantity: DecimalText
    average_price: DecimalText
    last_price: DecimalText | None
    market_value: DecimalText | None = Field(
        description="quantity x last_price; None when no price is known."
    )

    @classmethod
    def of(cls, line: Any, **more: Any) -> Self:
        """The line for a stored holding or position (anything with these attributes), its value
        worked out."""
        return cls(
            symbol=line.symbol,
            exchange=line.exchange,
            isin=line.isin,
            currency=line.currency,
            asset_type=line.asset_type,
            quantity=line.quantity,
            average_price=line.average_price,
            last_price=line.last_price,
            market_value=market_value(line.quantity, line.last_price),
            **more,
        )


class PositionOut(_HoldingLine):
    as_of: AwareDatetime


class AccountShareOut(_Response):
    account_id: uuid.UUID
    quantity: DecimalText
    average_price: DecimalText
    as_of: AwareDatetime


class ConsolidatedHoldingOut(_Response):
    symbol: str
    exchange: str
    currency: str
    isin: str | None
    asset_type: str
    quantity: DecimalText = Field(description="Sum over the portfolio's accounts.")
    average_price: DecimalText | None = Field(
        description="Average price weighted by each account's quantity."
    )
    last_price: DecimalText | None = Field(description="The most recent price any account reported.")
    market_value: DecimalText | None
    accounts: list[AccountShareOut]


# --- snapshots ---------------------------------------------------------------------------------


class SnapshotStatusOut(enum.StrEnum):
    """Mirrors shared.db.tables.SnapshotStatus, for the OpenAPI schema."""

    APPLIED = "applied"
    LATE = "late"
    HELD = "held"
    DISMISSED = "dismissed"


_SNAPSHOT_STATUS = (
    "applied: became the account's positions (when it arrived, or later when confirmed or accepted); "
    "late: taken before the positions it arrived after, so history only; "
    "held: looked like a broker error, waiting for the next sync or for the owner to accept it; "
    "dismissed: held, then contradicted by the next sync. "
    "As-of holdings read applied and late snapshots only."
)


class SnapshotOut(_Response):
    id: uuid.UUID
    taken_at: AwareDatetime = Field(description="When the broker reported these holdings.")
    received_at: AwareDatetime = Field(description="When the ledger recorded the snapshot.")
    status: SnapshotStatusOut = Field(description=_SNAPSHOT_STATUS)
    holdings_count: int


class SnapshotPage(BaseModel):
    items: list[SnapshotOut] = Field(description="Newest first (by taken_at, then id).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last page.")


class SnapshotHoldingOut(_HoldingLine):
    pass


class SnapshotDetailOut(SnapshotOut):
    holdings: list[SnapshotHoldingOut] = Field(description="What the snapshot lists, by symbol and exchange.")


class HeldSnapshotAccept(_Request):
    snapshot_id: uuid.UUID = Field(
        description="The id of the held snapshot (`held_snapshot.id` of GET /v1/accounts/{id}): "
        "naming it makes sure you accept the snapshot you looked at."
    )


class HeldSnapshotAccepted(BaseModel):
    snapshot_id: uuid.UUID
    accepted_by: uuid.UUID = Field(description="The user who accepted it: you.")


class HeldSnapshotDismiss(_Request):
    snapshot_id: uuid.UUID = Field(
        description="The id of the held snapshot (`held_snapshot.id` of GET /v1/accounts/{id}): "
        "naming it makes sure you dismiss the snapshot you looked at."
    )


class HeldSnapshotDismissed(BaseModel):
    snapshot_id: uuid.UUID
    dismissed_by: uuid.UUID = Field(description="The user who dismissed it: you.")


# --- transactions ------------------------------------------------------------------------------


class TransactionOrigin(enum.StrEnum):
    DERIVED = "derived"
    REPORTED = "reported"


class TransactionOut(_Response):
    id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    exchange: str
    kind: str = Field(
        description="Derived trades: opening, buy, sell or closing (a position appears, grows, shrinks, "
        "goes to zero). Reported trades: buy or sell."
    )
    quantity: DecimalText = Field(description="Always positive: `kind` says the direction.")
    price: DecimalText | None = Field(description="Per unit, in `currency`; None when nothing tells it.")
    price_source: str | None = Field(
        description="average_cost (solved from the change of the broker's average price), last_price "
        "(the market price the snapshot reported: an estimate), reported (the broker's own), or None."
    )
    currency: str
    occurred_at: AwareDatetime = Field(
        description="Derived: when the snapshot that showed the change was taken. Reported: when it executed."
    )
    origin: TransactionOrigin = Field(
        description="derived: inferred from the change between two consecutive snapshots; "
        "reported: listed by the broker itself."
    )
    snapshot_id: uuid.UUID | None = Field(description="The snapshot that showed or carried the trade.")
    trade_id: str | None = Field(description="The broker's id of a reported trade; None for derived ones.")


class TransactionPage(BaseModel):
    items: list[TransactionOut] = Field(description="Newest first (by occurred_at, then id).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last page.")


# --- sync --------------------------------------------------------------------------------------


class SyncRunOut(_Response):
    id: uuid.UUID
    trigger: str = Field(description="schedule, manual, import (an uploaded statement) or external.")
    status: str = Field(
        description="requested: waiting for a fetcher; retrying: an attempt failed and another is "
        "scheduled (see next_attempt_at); succeeded: a snapshot arrived (snapshot_id; whether it "
        "became the account's positions is snapshot_status); failed: the "
        "last attempt failed (failure_kind, failure_reason)."
    )
    requested_at: AwareDatetime
    finished_at: AwareDatetime | None = Field(description="Set once succeeded or failed.")
    failure_kind: str | None = Field(
        description="Of the latest failed attempt: auth (the broker rejected the credentials: set new "
        "ones), transient, rate_limited, invalid_response (the broker's answer made no sense), or "
        "unreadable_credentials (the deployment cannot decrypt the stored credentials: an operator's "
        "key problem, not yours; setting new credentials also cures it)."
    )
    failure_reason: str | None
    snapshot_id: uuid.UUID | None
    snapshot_status: str | None = Field(
        default=None,
        description="What the ledger made of the run's snapshot: applied (the account's positions), "
        "late (history only), held (it looks like an error, e.g. a statement leaving out most of "
        "what the account held: accept it with POST /v1/accounts/{id}/held-snapshot/accept, or sync "
        "or upload the same again), or dismissed (a later one contradicted it). A succeeded run whose "
        "snapshot is held did not change the account's positions.",
    )
    attempts: int = Field(description="Attempts made so far, counting the first.")
    next_attempt_at: AwareDatetime | None = Field(
        description="While retrying: the next attempt is not made before this time."
    )


class SyncRunPage(BaseModel):
    items: list[SyncRunOut] = Field(description="Newest first (by requested_at, then id).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last page.")


class SyncAccepted(BaseModel):
    request_id: uuid.UUID = Field(
        description="Id of the sync run; follow it in GET /v1/accounts/{id}/sync-runs."
    )


# --- statements --------------------------------------------------------------------------------


class StatementAccepted(BaseModel):
    request_id: uuid.UUID = Field(
        description="Id of the import's sync run; follow it in GET /v1/accounts/{id}/sync-runs."
    )
    holdings: int = Field(description="How many holdings the statement lists.")
    snapshot_id: uuid.UUID = Field(description="Id of the snapshot the statement becomes.")
    held_for_review: bool = Field(
        description="True when the statement leaves out all, or most, of what the account holds now: "
        "the ledger will hold it instead of applying it (see `review`)."
    )
    review: str | None = Field(
        description="When held_for_review: why, and how to confirm the statement is the whole account."
    )
    format: StatementFormat = Field(description="The format the file was read as.")
    statement_date: date | None = Field(
        description="The day the statement describes, when the format states it (Zerodha Console does)."
    )


class StatementProblemOut(BaseModel):
    line: int = Field(description="1-based line of the file (the header is line 1); 0 for the whole file.")
    message: str


class StatementRejectedOut(BaseModel):
    detail: str = Field(examples=["statement rejected: 2 problem(s)"])
    problems: list[StatementProblemOut] = Field(
        description="Every problem found, in line order (at most the first 1000)."
    )


# --- health ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str


# --- brokers -----------------------------------------------------------------------------------


class BrokerLimitsOut(_Response):
    rate_per_s: float = Field(description="Requests per second the broker allows, sustained.")
    burst: int = Field(description="Requests that may go at once after a quiet spell.")
    concurrency: int = Field(description="Most accounts of this broker fetched at the same time.")
    window_s: float = Field(description="The window the broker counts in: rate_per_s x window_s per window.")
    scope: Literal["application", "account"] = Field(
        description="Whom the broker counts the rate against: the deployment's application key, shared "
        "by every account and fetcher (split between fetchers by partitions), or each account."
    )


class BrokerTypeOut(_Response):
    code: str = Field(
        description="What `POST /v1/portfolios/{id}/accounts` takes as `broker`.", examples=["sim"]
    )
    name: str
    credential_fields: list[str] = Field(
        description="Fields `PUT /v1/accounts/{id}/credentials` must set for an account of this broker."
    )
    optional_credential_fields: list[str]
    limits: BrokerLimitsOut | None = Field(
        description="The broker's documented request limits (before any BROKER_LIMITS override); "
        "None for statement imports, which call no broker."
    )
    doc_url: str = Field(description="The broker's API reference, or the project document describing it.")
    sync: str = Field(
        description="`schedule`: fetched from the broker on a schedule and on demand; "
        "`statement`: holds what uploaded statements say.",
        examples=["schedule"],
    )
