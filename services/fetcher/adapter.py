"""What a broker adapter is, and the typed errors that decide what happens after a failed fetch."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.events import FailureKind, Holding


@dataclass(frozen=True)
class AccountContext:
    """What an adapter knows of the account it fetches; credentials are already decrypted."""

    account_id: uuid.UUID
    credentials: Mapping[str, str] = field(repr=False)


class BrokerAdapter(Protocol):
    async def fetch_holdings(self, account: AccountContext) -> Sequence[Holding]:
        """Everything the account holds now, or raise a BrokerError."""

    async def aclose(self) -> None:
        """Release clients (HTTP pools) the adapter opened."""


class BrokerError(Exception):
    """A fetch that failed for a reason the fetcher can act on; `kind` says which."""

    kind: FailureKind = FailureKind.TRANSIENT


class AuthRejected(BrokerError):
    kind = FailureKind.AUTH


class TransientBrokerError(BrokerError):
    kind = FailureKind.TRANSIENT


class RateLimited(BrokerError):
    kind = FailureKind.RATE_LIMITED

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidResponse(BrokerError):
    kind = FailureKind.INVALID_RESPONSE
