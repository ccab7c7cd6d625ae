"""Request and response bodies of API tokens and invites."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, Field, StringConstraints, field_validator, model_validator

from services.api.input_types import NO_CONTROL_CHARACTERS, Timestamp
from services.api.schemas import _Request, _Response, normal_email

MAX_TOKEN_LIFETIME = timedelta(days=3660)
# As long as the column (api_tokens.name): a longer one would reach the database and fail there.
TokenName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NO_CONTROL_CHARACTERS
]
MIN_LIFETIME_SECONDS = 60
MAX_INVITE_LIFETIME_SECONDS = 90 * 24 * 3600


class TokenCreate(_Request):
    name: TokenName = Field(examples=["laptop"], description="Unique among your tokens.")
    scope: Literal["read", "write"] = Field(
        default="read", description="`read`: GET routes only; `write`: everything your user may do."
    )
    expires_in_seconds: int | None = Field(
        default=None,
        ge=MIN_LIFETIME_SECONDS,
        le=int(MAX_TOKEN_LIFETIME.total_seconds()),
        description="Lifetime from now; give this or `expires_at`, or neither: the token does not expire.",
    )
    expires_at: Timestamp | None = Field(
        default=None, description="When the token stops working (ISO 8601 with a zone)."
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_in_seconds is not None and self.expires_at is not None:
            raise ValueError("give expires_in_seconds or expires_at, not both")
        return self

    def expiry(self, now: datetime) -> datetime | None:
        """When the token expires, or None; raises ValueError for a time outside (now, now + 10 years]."""
        if self.expires_in_seconds is not None:
            return now + timedelta(seconds=self.expires_in_seconds)
        if self.expires_at is None:
            return None
        if not now < self.expires_at <= now + MAX_TOKEN_LIFETIME:
            raise ValueError("expires_at must be in the future and at most 10 years away")
        return self.expires_at


class TokenOut(_Response):
    """A token as listed: never its secret, nor the secret's hash."""

    id: uuid.UUID
    name: str
    scope: Literal["read", "write"]
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    revoked_at: AwareDatetime | None
    last_used_at: AwareDatetime | None = Field(description="To the minute: updated at most once a minute.")


class TokenCreated(TokenOut):
    token: str = Field(description="Send as `Authorization: Bearer <token>`. Shown only once: store it.")


class InviteCreate(_Request):
    email: Annotated[str, NO_CONTROL_CHARACTERS] | None = Field(
        default=None,
        max_length=320,
        description="Only this address may use the invite; none: whoever holds the code.",
        examples=["grace@example.com"],
    )
    expires_in_seconds: int = Field(
        default=7 * 24 * 3600, ge=MIN_LIFETIME_SECONDS, le=MAX_INVITE_LIFETIME_SECONDS
    )

    @field_validator("email")
    @classmethod
    def _plausible_email(cls, value: str | None) -> str | None:
        return None if value is None else normal_email(value)  # as sign-up stores it


class InviteCreated(_Response):
    id: uuid.UUID
    email: str | None
    expires_at: AwareDatetime
    code: str = Field(description="Give it to the invitee for `POST /v1/users`. Shown only once.")
