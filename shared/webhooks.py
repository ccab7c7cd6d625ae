"""What the API and the webhook delivery service agree on: the event types an endpoint can subscribe
to, and the endpoint secrets' format (Standard Webhooks: `whsec_` and the base64 of the key)."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Literal

WebhookEventType = Literal["holdings.changed", "account.needs_reauth", "sync.failed"]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = (
    "holdings.changed",
    "account.needs_reauth",
    "sync.failed",
)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the scheme allows 24 to 64


def new_secret() -> str:
    """A fresh endpoint secret, as it is shown to the user (once) and stored."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ and base64") from None
