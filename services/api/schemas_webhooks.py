"""Webhook endpoints, their deliveries and replays, as the API takes and returns them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from services.api.input_types import NO_CONTROL_CHARACTERS, Timestamp
from shared.webhooks import WEBHOOK_EVENT_TYPES, WebhookEventType

MAX_GRACE_SECONDS = 7 * 24 * 3600


def _webhook_url(value: str) -> str:
    """http or https, a host, and no credentials: a secret in the URL would be shown in every listing."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with https:// (or http://)")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "the URL must not carry credentials (user:password@); each delivery is signed instead"
        )
    if " " in value:
        raise ValueError("the URL must not contain spaces")
    return value


WebhookUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2000), NO_CONTROL_CHARACTERS, AfterValidator(_webhook_url)
]
EventTypes = Annotated[
    list[WebhookEventType],
    Field(
        min_length=1,
        description="The events to send: any of " + ", ".join(f"`{t}`" for t in WEBHOOK_EVENT_TYPES) + ".",
    ),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), NO_CONTROL_CHARACTERS]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookEndpointCreate(_Request):
    url: WebhookUrl = Field(examples=["https://example.com/hooks/portfolio"])
    event_types: EventTypes = Field(default_factory=lambda: list(WEBHOOK_EVENT_TYPES))
    description: Description = ""


class WebhookEndpointUpdate(_Request):
    """Partial: a field left out keeps its value. `enabled: true` enables an endpoint the delivery
    service disabled: what is pending is sent again."""

    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: Literal[True] | None = Field(
        default=None, description="true: enable the endpoint again after it was disabled."
    )


class SecretRotation(_Request):
    grace_seconds: int = Field(
        default=24 * 3600,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the previous secret stays valid: until then each delivery is signed with "
        "both (two signatures in `webhook-signature`).",
    )


class ReplayCreate(_Request):
    """Exactly one of the two: one logged delivery, or every delivery since a time."""

    delivery_id: uuid.UUID | None = None
    since: Timestamp | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.delivery_id is None) == (self.since is None):
            raise ValueError("give exactly one of delivery_id and since")
        return self


class WebhookEndpointOut(BaseModel):
    id: uuid.UUID
    portfolio_id: uuid.UUID
    url: str
    event_types: list[WebhookEventType]
    description: str
    created_at: AwareDatetime
    state: Literal["active", "disabled"] = Field(
        description="disabled: the delivery service stopped sending after repeated failures (see "
        "`disabled_reason`); PATCH `enabled: true` to resume."
    )
    disabled_at: AwareDatetime | None
    disabled_reason: str | None
    consecutive_failures: int = Field(description="Failed attempts in a row, since the last success.")
    last_success_at: AwareDatetime | None
    previous_secret_valid_until: AwareDatetime | None = Field(
        description="After a rotation: until when deliveries are also signed with the previous secret."
    )


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(
        description="The signing secret (`whsec_` + base64): shown only now. Verify each delivery with "
        "it (docs/webhooks.md)."
    )


class WebhookEndpointPage(BaseModel):
    items: list[WebhookEndpointOut] = Field(description="Oldest first (by created_at, then id).")
    next_cursor: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    message_id: str = Field(description="The `webhook-id` header: the same on a replay of the delivery.")
    event_type: str
    payload: Any = Field(description="The body that was sent.")
    replay_id: uuid.UUID | None = Field(description="The replay that queued it; none for the original.")
    created_at: AwareDatetime
    status: Literal["pending", "delivered", "failed"] = Field(
        description="pending: not yet delivered, retried at `next_attempt_at`; failed: given up."
    )
    attempts: int
    next_attempt_at: AwareDatetime | None
    last_attempt_at: AwareDatetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: AwareDatetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut] = Field(description="Newest first (by created_at, then id).")
    next_cursor: str | None


class ReplayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint_id: uuid.UUID
    delivery_id: uuid.UUID | None
    since: AwareDatetime | None
    requested_at: AwareDatetime
