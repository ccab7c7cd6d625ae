"""This process's part of a broker's application-wide rate limit, by the partitions it owns.

Every fetcher of a broker consumes `sync.requests.<broker>` and its retry topic in two consumer
groups; each (topic, partition) is a slot. The limit's requests per window are dealt out over all
slots of both topics, the same way in every process (largest remainder, in (partition, topic)
order), and a process may send what its slots add up to. The parts of all processes sum to the
limit whatever the number of processes, and follow every rebalance: a slot's part moves with the
slot. A slot newly taken from another process is used only after a window (and the guard) has
passed, so that its previous owner's last requests are out of every window the new owner counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shared.brokers import BrokerLimits

log = logging.getLogger(__name__)

Slot = tuple[str, int]  # (topic, partition)

# A request sent at the end of one window may reach the broker in its next one. Each process keeps
# its part within every window this much longer than the broker's, so that a delay of up to this
# long between sending and the broker's count cannot add up to more than the limit.
WINDOW_GUARD_S = 0.1


def slot_allotments(requests_per_window: int, slots: list[Slot]) -> dict[Slot, int]:
    """`requests_per_window` dealt over `slots` in (partition, topic) order: every slot gets the
    quotient, the first `remainder` slots one more. Every process computes the same deal."""
    ordered = sorted(slots, key=lambda slot: (slot[1], slot[0]))
    if not ordered:
        return {}
    base, extra = divmod(requests_per_window, len(ordered))
    return {slot: base + (1 if index < extra else 0) for index, slot in enumerate(ordered)}


@dataclass(frozen=True)
class BucketShape:
    """A token bucket that lets at most `allotment` requests through in any window of the limit's
    length plus the guard: `burst` at once, then `rate_per_s`."""

    rate_per_s: float
    burst: int

    @classmethod
    def of(cls, allotment: int, limits: BrokerLimits) -> BucketShape:
        if allotment <= 0:
            return cls(rate_per_s=0.0, burst=1)
        total = requests_per_window(limits)
        burst = max(1, min(allotment, limits.burst * allotment // total))
        # A bucket that starts full lets `burst + ceil(rate x L) - 1` through in any window of length
        # L; with rate = (allotment - burst + 1) / L that is at most `allotment`.
        return cls(rate_per_s=(allotment - burst + 1) / (limits.window_s + WINDOW_GUARD_S), burst=burst)


def requests_per_window(limits: BrokerLimits) -> int:
    return max(1, math.floor(limits.rate_per_s * limits.window_s + 1e-9))


class ApplicationShare:
    """The slots this process owns in each consumer group of its broker, and what they allow.

    `topics`: the broker's request topics (new and retry), over whose partitions the limit is dealt.
    `listener(group)` gives the `AssignmentListener` of one group; `allotment()` is this process's
    requests per window, now. `on_change` is called whenever the allotment may have changed.
    """

    def __init__(
        self,
        limits: BrokerLimits,
        topics: Sequence[str],
        *,
        broker: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.topics = tuple(topics)  # every topic whose partitions the limit is dealt over
        self.broker = broker
        self._clock = clock
        self._owned: dict[str, frozenset[Slot]] = {}  # per consumer group
        self._counts: dict[str, int] = {}  # partitions per topic, as the assignments told
        self._usable_from: dict[Slot, float] = {}  # monotonic time a newly taken slot may be used
        self._given_up: dict[str, frozenset[Slot]] = {}  # per group, in the rebalance under way
        self._watchers: list[Callable[[], None]] = []
        self._warned = False

    def on_change(self, callback: Callable[[], None]) -> None:
        self._watchers.append(callback)

    def listener(self, group: str) -> _GroupListener:
        return _GroupListener(self, group)

    def allotment(self) -> int:
        if any(topic not in self._counts for topic in self.topics):
            # Dealt over part of the slots, this process's part would be too large: nothing until
            # every group has told how many partitions its topic has (its first assignment).
            return 0
        now = self._clock()
        slots = [(t, p) for t in self.topics for p in range(self._counts[t])]
        deal = slot_allotments(requests_per_window(self.limits), slots)
        owned = [slot for held in self._owned.values() for slot in held]
        usable = [slot for slot in owned if self._usable_from.get(slot, 0.0) <= now]
        allotment = sum(deal.get(slot, 0) for slot in usable)
        if allotment == 0 and usable:
            # Fewer requests per window than slots: these slots got none. Stalling their accounts
            # forever would be worse than a rare 429, so the process keeps one request per window.
            if not self._warned:
                self._warned = True
                log.warning(
                    "the broker's application-wide limit allows fewer requests per window than the "
                    "request topics have partitions; this fetcher keeps one per window, and the sum "
                    "over fetchers may pass the limit: give the topics fewer partitions",
                    extra={"broker": self.broker, "requests_per_window": requests_per_window(self.limits)},
                )
            return 1
        return allotment

    def _revoked(self, group: str, partitions: frozenset[Slot]) -> None:
        held = self._owned.get(group, frozenset())
        self._given_up[group] = self._given_up.get(group, frozenset()) | (held & partitions)
        self._owned[group] = held - partitions
        self._notify()

    def _assigned(self, group: str, partitions: frozenset[Slot], counts: Mapping[str, int]) -> None:
        now = self._clock()
        hold = self.limits.window_s + WINDOW_GUARD_S
        # Given up in this rebalance and handed back: no other process held them in between.
        kept = self._given_up.pop(group, frozenset()) | self._owned.get(group, frozenset())
        for slot in partitions - kept:
            self._usable_from[slot] = now + hold
        self._owned[group] = partitions
        self._counts.update({topic: count for topic, count in counts.items() if count > 0})
        if any(self._usable_from.get(slot, 0.0) > now for slot in partitions):
            asyncio.get_running_loop().call_later(hold, self._notify)
        self._notify()

    def _notify(self) -> None:
        for callback in self._watchers:
            callback()


@dataclass(frozen=True)
class _GroupListener:
    share: ApplicationShare
    group: str

    def revoked(self, partitions: frozenset[Slot]) -> None:
        self.share._revoked(self.group, partitions)

    def assigned(self, partitions: frozenset[Slot], partition_counts: Mapping[str, int]) -> None:
        self.share._assigned(self.group, partitions, partition_counts)
