"""Credential encryption at rest and in transit: MultiFernet, so keys can rotate.

The first key encrypts; every key decrypts. Keys come from settings (CREDENTIALS_KEYS), never code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CredentialsKeyError(ValueError):
    """The configured keys are missing or malformed."""


class CredentialsUnreadable(ValueError):
    """A token that none of the configured keys opens (wrong key, or tampered)."""


class CredentialCipher:
    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise CredentialsKeyError(
                "CREDENTIALS_KEYS is not set: generate a key with `portfolio-sync keys generate`"
            )
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except ValueError:
            raise CredentialsKeyError("CREDENTIALS_KEYS holds a value that is not a Fernet key") from None

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, credentials: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(credentials), sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> dict[str, str]:
        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise CredentialsUnreadable("credentials cannot be decrypted with the configured keys") from None
        return {str(k): str(v) for k, v in data.items()}

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key."""
        return self._fernet.rotate(token.encode()).decode()
