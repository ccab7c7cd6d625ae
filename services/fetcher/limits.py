"""Per-broker request limits: a token bucket for the rate and a semaphore for concurrency.

One `BrokerLimiter` per broker per fetcher process; every HTTP request an adapter sends takes a
token first, so the documented limit holds across all accounts the process syncs at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from shared.brokers import BrokerLimits

__all__ = ["BrokerLimiter", "BrokerLimits", "TokenBucket"]


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a request may be sent; callers are served in arrival order."""
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate_per_s)  # until the next token


class BrokerLimiter:
    """The rate bucket and the concurrency cap of one broker in this process."""

    def __init__(self, limits: BrokerLimits, *, broker: str = "") -> None:
        self.limits = limits
        self.broker = broker  # the metrics' label
        self.requests = TokenBucket(limits.rate_per_s, limits.burst)
        self.accounts = asyncio.Semaphore(limits.concurrency)
