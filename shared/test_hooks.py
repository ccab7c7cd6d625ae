"""Crash points that only tests enable: the chaos suite kills a process at a chosen moment.

`PORTFOLIO_SYNC_TEST_CRASH_AT=<point>[:<n>]` makes the process SIGKILL itself the `n`-th time (default
the first) it reaches `crash_point(<point>)`, as a machine dying there would. Unset (always, outside
tests), a crash point costs one dictionary lookup and does nothing.
"""

from __future__ import annotations

import functools
import os
import signal

CRASH_AT_ENV = "PORTFOLIO_SYNC_TEST_CRASH_AT"

LEDGER_AFTER_COPY = "ledger.after_copy"
"""The ledger wrote a batch (its COPYs and updates) and has not committed it yet."""
LEDGER_AFTER_RELAY_ACK = "ledger.after_relay_ack"
"""Kafka acknowledged the relayed outbox messages; their delete is not committed yet."""

HISTORY_BEFORE_COMMIT = "history.before_commit"
"""A batch of old history is moved (versions and prices written, rows deleted) and not committed yet."""

POINTS = (LEDGER_AFTER_COPY, LEDGER_AFTER_RELAY_ACK, HISTORY_BEFORE_COMMIT)


@functools.cache
def _armed() -> dict[str, list[int]]:
    """{point: [passes left before the crash]}, read once from the environment."""
    armed: dict[str, list[int]] = {}
    for item in os.environ.get(CRASH_AT_ENV, "").split(","):
        point, _, count = item.strip().partition(":")
        if point:
            if point not in POINTS:
                raise ValueError(f"{CRASH_AT_ENV}: unknown crash point {point!r}; known: {', '.join(POINTS)}")
            armed[point] = [int(count or 1)]
    return armed


def crash_point(point: str) -> None:
    """SIGKILL this process here if a test armed `point` and this is the pass it chose."""
    left = _armed().get(point)
    if left is None:
        return
    left[0] -= 1
    if left[0] == 0:
        os.kill(os.getpid(), signal.SIGKILL)
