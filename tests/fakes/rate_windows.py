"""A broker's own count of requests: at most `limit` per key in each of its fixed windows.

The fakes enforce their broker's documented limit with it, answer the broker's 429 when a request
is over, and count those answers; every request's arrival is kept so that a test or a benchmark can
find the busiest second. Windows are aligned on the epoch, as a broker's own counters would be.
"""

from __future__ import annotations

import time
from collections import Counter


class FixedWindowLimit:
    def __init__(self, limit: int, *, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.rejected = 0  # 429s answered
        self.arrivals: list[float] = []  # time.time() of every request counted, admitted or not
        self._counts: Counter[tuple[str, int]] = Counter()

    def admit(self, key: str) -> bool:
        """Count one request of `key`; False when it is over the limit of the current window."""
        now = time.time()
        self.arrivals.append(now)
        window = (key, int(now // self.window_s))
        self._counts[window] += 1
        if len(self._counts) > 10_000:  # windows long past: forget them
            current = int(now // self.window_s)
            self._counts = Counter({w: n for w, n in self._counts.items() if w[1] >= current - 1})
        if self._counts[window] > self.limit:
            self.rejected += 1
            return False
        return True

    def seconds_to_next_window(self) -> float:
        now = time.time()
        return self.window_s - (now % self.window_s)


def most_in_any_window(arrivals: list[float], window_s: float = 1.0) -> int:
    """The most arrivals inside any half-open window of `window_s` (sliding, not aligned)."""
    ordered = sorted(arrivals)
    most, left = 0, 0
    for right, at in enumerate(ordered):
        while at - ordered[left] >= window_s:
            left += 1
        most = max(most, right - left + 1)
    return most
