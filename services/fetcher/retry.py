"""When to try a failed sync again: exponential backoff with full jitter, never before the broker allows
(up to `max_s`: a broker's Retry-After of days would park the sync for days)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from shared.settings import Settings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_s: float
    max_s: float
    # The longest a batch waits for a retry's not_before; well under Kafka's max poll interval.
    max_inline_wait_s: float = 5.0
    jitter: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.fetcher_max_attempts,
            base_s=settings.fetcher_backoff_seconds,
            max_s=settings.fetcher_max_backoff_seconds,
            max_inline_wait_s=settings.fetcher_max_inline_wait_seconds,
        )

    def delay_s(self, attempt: int, *, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when `attempt` was the last."""
        if attempt >= self.max_attempts:
            return None
        # Full jitter (spread uniformly over [0, cap]) keeps many failing accounts from retrying in step.
        backoff = self.jitter.uniform(0, min(self.max_s, self.base_s * 2 ** (attempt - 1)))
        return max(backoff, min(retry_after_s or 0.0, self.max_s))
