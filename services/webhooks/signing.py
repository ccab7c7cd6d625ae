"""Standard Webhooks signatures (https://www.standardwebhooks.com/): HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{body}` with the endpoint's key, as `v1,<base64>`; several
space-separated while a rotated-out secret is still valid."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from shared.webhooks import secret_key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a delivery, signed with each of `secrets` (the current one first)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets),
    }
