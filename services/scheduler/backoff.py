"""Brokers set aside after a failed publish: exponential backoff, per broker, in this scheduler.

A broker whose topic is missing or whose publish fails must not hold up the others. Its schedules are
left unclaimed (so nothing is lost: the ticks stay due) until its backoff ends; each further failure
doubles the wait, up to a maximum, and a success clears it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class BrokerBackoff:
    first_s: float = 5.0
    max_s: float = 300.0
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, datetime] = field(default_factory=dict)

    def set_aside(self, broker: str, *, now: datetime) -> float:
        """Record a failed publish of `broker`; return the seconds until it is tried again."""
        failures = self._failures.get(broker, 0) + 1
        self._failures[broker] = failures
        delay = min(self.max_s, self.first_s * 2.0 ** (failures - 1))
        self._until[broker] = now + timedelta(seconds=delay)
        return delay

    def succeeded(self, broker: str) -> None:
        self._failures.pop(broker, None)
        self._until.pop(broker, None)

    def waiting(self, *, now: datetime) -> frozenset[str]:
        """The brokers still set aside at `now`."""
        return frozenset(broker for broker, until in self._until.items() if until > now)
