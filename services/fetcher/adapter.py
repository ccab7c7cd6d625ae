"""What a broker adapter is, and the typed errors that decide what happens after a failed fetch.

An adapter works in two steps: `fetch_answer` asks the broker (HTTP, limits, the failures that
mean there is no holdings answer), `parse_holdings` reads the answer into holdings without any I/O.
The fetcher archives the answer between the two, so an archived answer can be parsed again later
by a fixed adapter (`portfolio-sync replay`) without asking the broker.
"""

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


@dataclass(frozen=True)
class BrokerAnswer:
    """The broker's answer to a holdings request as received: its HTTP status and body (no headers).

    `secrets` are the credential values the request carried, kept only to blank them out of error
    messages; they are never archived (an archived answer is read back with none)."""

    status_code: int
    body: bytes
    secrets: tuple[str, ...] = field(default=(), repr=False)


class BrokerAdapter(Protocol):
    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        """The broker's answer to the account's holdings request, or raise a BrokerError when the
        answer cannot hold any (credentials refused, rate limited, broker down)."""

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        """Everything the answer says the account holds, or raise a BrokerError. No I/O."""

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


async def fetch_holdings(adapter: BrokerAdapter, account: AccountContext) -> Sequence[Holding]:
    """Both steps at once: everything the account holds now, or a BrokerError."""
    return adapter.parse_holdings(await adapter.fetch_answer(account))
