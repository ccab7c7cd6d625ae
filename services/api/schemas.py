"""Request and response bodies. Decimals go out as JSON strings, never floats."""

from __future__ import annotations

import re
import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Self

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

from shared.statements import STATEMENT_BROKER, StatementFormat

BROKER_CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
MIN_SYNC_INTERVAL_SECONDS = 60
MAX_SYNC_INTERVAL_SECONDS = 366 * 24 * 3600
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _decimal_text(value: Decimal) -> str:
    """Plain notation ("100", not "1E+2"), without trailing zeros."""
    return "0" if value.is_zero() else format(value.normalize(), "f")


DecimalText = Annotated[Decimal, PlainSerializer(_decimal_text, return_type=str, when_used="json")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Request(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- users -------------------------------------------------------------------------------------


class UserCreate(_Request):
    email: str = Field(max_length=320, examples=["ada@example.com"])

    @field_validator("email")
    @classmethod
    def _plausible_email(cls, value: str) -> str:
        email = value.strip().lower()
        if not _EMAIL.match(email):
            raise ValueError("email must look like name@example.com")
        return email


class UserOut(_Response):
    id: uuid.UUID
    email: str
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


class PortfolioOut(_Response):
    id: uuid.UUID
    name: str
    created_at: AwareDatetime


# --- accounts ----------------------------------------------------------------------------------


class AccountCreate(_Request):
    broker: str = Field(
        description="Lowercase broker code: a letter, then 1-31 letters, digits or underscores.",
        examples=["simulated"],
        json_schema_extra={"pattern": BROKER_CODE.pattern},
    )
    label: Name = Field(examples=["Main trading account"])
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
        return self


class AccountOut(_Response):
    id: uuid.UUID
    portfolio_id: uuid.UUID
    broker: str
    label: str
    created_at: AwareDatetime
    sync_interval_seconds: int | None = Field(description="None if the account has no schedule.")
    sync_enabled: bool
    next_run_at: AwareDatetime | None
    last_attempt_at: AwareDatetime | None
    last_success_at: AwareDatetime | None
    consecutive_failures: int
    needs_reauth: bool = Field(description="The broker rejected the credentials: set new ones to sync again.")
    last_error: str | None
    positions_as_of: AwareDatetime | None
    has_credentials: bool = Field(description="Whether credentials are stored; they are never returned.")


CredentialKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CredentialValue = Annotated[SecretStr, Field(max_length=4096)]


class CredentialsIn(_Request):
    credentials: dict[CredentialKey, CredentialValue] = Field(
        min_length=1,
        max_length=32,
        description="What the broker needs to sign in, e.g. api_key and api_secret. Encrypted, write-only.",
        examples=[{"api_key": "...", "api_secret": "..."}],
    )

    def plaintext(self) -> dict[str, str]:
        return {key: value.get_secret_value() for key, value in self.credentials.items()}


# --- holdings ----------------------------------------------------------------------------------


class PositionOut(_Response):
    symbol: str
    exchange: str
    isin: str | None
    currency: str
    asset_type: str
    quantity: DecimalText
    average_price: DecimalText
    last_price: DecimalText | None
    market_value: DecimalText | None = Field(
        description="quantity x last_price; None until a price is known."
    )
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


# --- sync --------------------------------------------------------------------------------------


class SyncRunOut(_Response):
    id: uuid.UUID
    trigger: str
    status: str = Field(description="requested, succeeded or failed.")
    requested_at: AwareDatetime
    finished_at: AwareDatetime | None
    failure_kind: str | None
    failure_reason: str | None
    snapshot_id: uuid.UUID | None


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
