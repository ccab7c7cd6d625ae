"""Per-broker request limits: token buckets for the rate, scoped as the broker counts, and a
semaphore for concurrency.

One `BrokerLimiter` per broker per fetcher process. Every HTTP request an adapter sends takes a
token first from the bucket its limit's scope names (`shared.brokers.LimitScope`):
- account scope: a bucket per account credential (`key_fields`), the whole documented limit each;
  an account's requests are keyed to one partition, so one process at a time sends them;
- application scope: a bucket per application key, of this process's part of the limit
  (`ApplicationShare`: the partitions it owns), so that all fetchers of the broker together keep it.
The account being fetched is known from `counting_for`, which the fetcher sets around each fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar

from services.fetcher.limit_share import ApplicationShare, BucketShape, requests_per_window
from shared.brokers import BrokerLimits, LimitScope

__all__ = ["BrokerLimiter", "BrokerLimits", "ScopedBuckets", "TokenBucket", "counting_for"]

# The credentials of the account whose fetch is running in this task (each request is its own task).
_CREDENTIALS: ContextVar[Mapping[str, str] | None] = ContextVar("limit_credentials", default=None)
# Idle buckets are dropped once there are more than this many (a full bucket is a new bucket).
_KEEP_BUCKETS = 1024


@contextlib.contextmanager
def counting_for(credentials: Mapping[str, str]) -> Iterator[None]:
    """Count the requests sent inside this block against the account with `credentials`."""
    token = _CREDENTIALS.set(credentials)
    try:
        yield
    finally:
        _CREDENTIALS.reset(token)


class TokenBucket:
    """`burst` requests at once, then `rate_per_s`; resizable (a rate of 0 holds every request)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()
        self._resized = asyncio.Event()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now

    def resize(self, rate_per_s: float, burst: int) -> None:
        self._refill(time.monotonic())
        self.rate_per_s, self.burst = rate_per_s, burst
        self._tokens = min(self._tokens, burst)
        self._resized.set()

    @property
    def idle(self) -> bool:
        """Full and unused: dropping it loses nothing."""
        self._refill(time.monotonic())
        return self._tokens >= self.burst and not self._lock.locked()

    async def acquire(self) -> None:
        """Wait until a request may be sent; callers are served in arrival order."""
        async with self._lock:
            while True:
                self._refill(time.monotonic())
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                self._resized.clear()
                if self.rate_per_s <= 0:
                    await self._resized.wait()  # no part of the limit now: until a rebalance gives one
                else:
                    await asyncio.sleep((1 - self._tokens) / self.rate_per_s)  # until the next token


class ScopedBuckets:
    """The buckets of one broker's rate limit in this process, one per key the broker counts by."""

    def __init__(self, limits: BrokerLimits) -> None:
        self.limits = limits
        self._share: ApplicationShare | None = None
        self._buckets: dict[str, TokenBucket] = {}

    def share_by(self, share: ApplicationShare) -> None:
        """Take this process's part of an application-wide limit from `share`, as it changes."""
        self._share = share
        share.on_change(self._resize)
        self._resize()

    def _shape(self) -> BucketShape:
        if self.limits.scope is LimitScope.ACCOUNT:
            return BucketShape(self.limits.rate_per_s, self.limits.burst)
        if self._share is None:  # not wired to a consumer: this process is the broker's only user
            return BucketShape.of(requests_per_window(self.limits), self.limits)
        return BucketShape.of(self._share.allotment(), self.limits)

    def _resize(self) -> None:
        shape = self._shape()
        for bucket in self._buckets.values():
            bucket.resize(shape.rate_per_s, shape.burst)

    def key(self, credentials: Mapping[str, str] | None) -> str:
        """Which bucket: a digest of the credential fields the broker counts by ('' for none)."""
        values = [(credentials or {}).get(field, "") for field in self.limits.key_fields]
        if not any(values):
            return ""
        return hashlib.sha256("\0".join(values).encode()).hexdigest()

    def bucket(self, credentials: Mapping[str, str] | None) -> TokenBucket:
        key = self.key(credentials)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _KEEP_BUCKETS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.idle}
            shape = self._shape()
            bucket = self._buckets[key] = TokenBucket(shape.rate_per_s, shape.burst)
        return bucket

    async def acquire(self) -> None:
        """Take a token for one request of the account `counting_for` names."""
        await self.bucket(_CREDENTIALS.get()).acquire()


class BrokerLimiter:
    """The scoped rate buckets and the concurrency cap of one broker in this process.

    Until `share_by_partitions` an application-wide limit is taken whole: right for a process that is
    the broker's only user (an adapter's tests); a fetcher process shares it by its partitions.
    """

    def __init__(self, limits: BrokerLimits, *, broker: str = "") -> None:
        self.limits = limits
        self.broker = broker  # the metrics' label
        self.requests = ScopedBuckets(limits)
        self.accounts = asyncio.Semaphore(limits.concurrency)

    def share_by_partitions(self, topics: Sequence[str]) -> ApplicationShare:
        """From now on, take the part of an application-wide limit that the partitions this process
        owns of `topics` (the broker's request topics) allow; its listeners go to their consumers."""
        share = ApplicationShare(self.limits, topics, broker=self.broker)
        self.requests.share_by(share)
        return share
