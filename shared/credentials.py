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
            fernets = [Fernet(k.encode()) for k in parts]
        except ValueError:
            raise CredentialsKeyError("CREDENTIALS_KEYS holds a value that is not a Fernet key") from None
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

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

    def is_current(self, token: str) -> bool:
        """Whether the newest key alone opens `token`: re-encrypting it would change nothing."""
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key; CredentialsUnreadable if no configured key opens it."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise CredentialsUnreadable("credentials cannot be decrypted with the configured keys") from None
