"""Rate limits counted as the broker counts them: per account credential, or per application key
shared by every fetcher process in proportion to the partitions each owns."""

from __future__ import annotations

import time
from collections.abc import Sequence

from services.fetcher.limit_share import (
    WINDOW_GUARD_S,
    ApplicationShare,
    BucketShape,
    Slot,
    slot_allotments,
)
from services.fetcher.limits import BrokerLimiter, counting_for
from services.fetcher.registry import plugin
from shared.brokers import BrokerLimits, LimitScope
from tests.support.waiting import eventually

REQUESTS = "sync.requests.zerodha"
RETRIES = "sync.requests.zerodha.retry"
KITE = BrokerLimits(rate_per_s=10, burst=1, scope=LimitScope.APPLICATION, key_fields=("api_key",))


async def _seconds_for_one_request_each(limiter: BrokerLimiter, accounts: Sequence[dict[str, str]]) -> float:
    started = time.monotonic()
    for credentials in accounts:
        with counting_for(credentials):
            await limiter.requests.acquire()
    return time.monotonic() - started


async def test_an_account_scoped_limit_gives_each_account_credential_its_own_budget() -> None:
    # One request per second per account, as a slow per-account limit: ten accounts need not queue.
    limiter = BrokerLimiter(
        BrokerLimits(rate_per_s=1, burst=1, scope=LimitScope.ACCOUNT, key_fields=("key_id",))
    )
    accounts = [{"key_id": f"key-{n}", "secret_key": "s"} for n in range(10)]
    assert await _seconds_for_one_request_each(limiter, accounts) < 0.5
    # The same account again waits for its own next token.
    assert await _seconds_for_one_request_each(limiter, accounts[:1]) > 0.8


async def test_an_application_scoped_limit_is_one_budget_for_every_account_of_the_key() -> None:
    limiter = BrokerLimiter(
        BrokerLimits(rate_per_s=5, burst=1, scope=LimitScope.APPLICATION, key_fields=("api_key",))
    )
    same_app = [{"api_key": "app", "access_token": f"user-{n}"} for n in range(4)]
    assert await _seconds_for_one_request_each(limiter, same_app) > 3 / 5 * 0.9
    other_app = [{"api_key": f"app-{n}", "access_token": "t"} for n in range(4)]
    assert await _seconds_for_one_request_each(limiter, other_app) < 0.3


def test_each_broker_declares_the_scope_its_documentation_gives() -> None:
    scopes = {code: plugin(code).limits.scope for code in ("zerodha", "alpaca", "upstox", "dhan")}
    assert scopes == {
        "zerodha": LimitScope.APPLICATION,  # per API key, over all its users
        "alpaca": LimitScope.ACCOUNT,
        "upstox": LimitScope.ACCOUNT,
        "dhan": LimitScope.ACCOUNT,
    }


def _slots(partitions: int = 4) -> list[Slot]:
    return [(topic, p) for topic in (REQUESTS, RETRIES) for p in range(partitions)]


def test_the_limit_is_dealt_over_the_slots_of_both_topics_to_the_last_request() -> None:
    deal = slot_allotments(10, _slots())
    assert sum(deal.values()) == 10
    assert sorted(deal.values()) == [1, 1, 1, 1, 1, 1, 2, 2]
    assert slot_allotments(10, list(reversed(_slots()))) == deal, "every process deals the same way"


def _max_in_any_window(shape: BucketShape, window_s: float, horizon_s: float = 10.0) -> int:
    """Send as fast as the bucket allows (it starts full); the most grants in any half-open window
    (a hair shorter: a grant that lands exactly on the window's end, give or take a float's last
    bit, belongs to the next one)."""
    window_s -= 1e-9
    grants = [0.0] * shape.burst
    if shape.rate_per_s > 0:
        step = 1 / shape.rate_per_s
        grants += [step * n for n in range(1, int(horizon_s * shape.rate_per_s) + 1)]
    most, left = 0, 0
    for right, at in enumerate(grants):
        while at - grants[left] >= window_s:
            left += 1
        most = max(most, right - left + 1)
    return most


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def pass_a_window(self) -> None:
        self.now += KITE.window_s + WINDOW_GUARD_S + 0.01


async def _share(
    limits: BrokerLimits, requests: set[int], retries: set[int], clock: _Clock
) -> ApplicationShare:
    share = ApplicationShare(limits, [REQUESTS, RETRIES], clock=clock)
    share.listener("fetcher").assigned(frozenset((REQUESTS, p) for p in requests), {REQUESTS: 4})
    share.listener("fetcher.retry").assigned(frozenset((RETRIES, p) for p in retries), {RETRIES: 4})
    return share


async def test_the_parts_of_one_two_or_three_processes_never_pass_the_limit_in_any_window() -> None:
    layouts: list[list[tuple[set[int], set[int]]]] = [
        [({0, 1, 2, 3}, {0, 1, 2, 3})],
        [({0, 1}, {2, 3}), ({2, 3}, {0, 1})],
        [({0, 1}, {3}), ({2}, {0, 1}), ({3}, {2})],
    ]
    for processes in layouts:
        clock = _Clock()
        shares = [await _share(KITE, requests, retries, clock) for requests, retries in processes]
        clock.pass_a_window()
        allotments = [share.allotment() for share in shares]
        assert sum(allotments) == 10, f"{len(processes)} process(es): {allotments}"
        # The guard's margin: even a window that long holds no more than the limit.
        sent = sum(
            _max_in_any_window(BucketShape.of(a, KITE), KITE.window_s + WINDOW_GUARD_S) for a in allotments
        )
        assert sent <= 10, f"{len(processes)} process(es) send {sent} in one window"
        assert all(a > 0 for a in allotments), "every process that owns partitions can send"


async def test_a_burst_allowance_is_shared_too() -> None:
    limits = BrokerLimits(rate_per_s=100, burst=40)
    for allotment in (100, 50, 13, 1):
        shape = BucketShape.of(allotment, limits)
        assert _max_in_any_window(shape, limits.window_s + WINDOW_GUARD_S) <= allotment


async def test_a_slot_taken_from_another_process_waits_a_window_and_one_kept_does_not() -> None:
    clock = _Clock()
    share = ApplicationShare(KITE, [REQUESTS], clock=clock)
    requests = share.listener("fetcher")
    requests.assigned(frozenset({(REQUESTS, 0), (REQUESTS, 1)}), {REQUESTS: 4})
    assert share.allotment() == 0, "its previous owner's requests may still be in this window"
    clock.pass_a_window()
    assert share.allotment() == 6  # 10 over the 4 partitions of one topic: 3, 3, 2, 2

    # A rebalance: everything is given up first (nothing may be sent meanwhile), then partition 0
    # comes back (it was never another's: usable at once) with partition 2 (held back a window).
    requests.revoked(frozenset({(REQUESTS, 0), (REQUESTS, 1)}))
    assert share.allotment() == 0
    requests.assigned(frozenset({(REQUESTS, 0), (REQUESTS, 2)}), {REQUESTS: 4})
    assert share.allotment() == 3
    clock.pass_a_window()
    assert share.allotment() == 5


async def test_the_buckets_follow_the_share_on_every_rebalance() -> None:
    limiter = BrokerLimiter(KITE, broker="zerodha")
    share = limiter.share_by_partitions([REQUESTS])
    bucket = limiter.requests.bucket({"api_key": "app"})
    assert bucket.rate_per_s == 0, "no partitions, no part of the limit"
    listener = share.listener("fetcher")
    everything = frozenset({(REQUESTS, p) for p in range(4)})
    listener.assigned(everything, {REQUESTS: 4})
    whole = BucketShape.of(10, KITE).rate_per_s

    async def resized() -> bool:
        return bucket.rate_per_s == whole

    await eventually(resized, timeout_s=5, what="the bucket to take the whole limit after the hold")
    listener.revoked(everything)
    assert bucket.rate_per_s == 0, "given up: nothing is sent until the rebalance ends"
    listener.assigned(frozenset({(REQUESTS, 0), (REQUESTS, 1)}), {REQUESTS: 4})
    assert bucket.rate_per_s == BucketShape.of(6, KITE).rate_per_s, "partitions 0 and 1: 3 + 3 of 10"


async def test_nothing_is_dealt_until_every_request_topic_has_told_its_partitions() -> None:
    clock = _Clock()
    share = ApplicationShare(KITE, [REQUESTS, RETRIES], clock=clock)
    share.listener("fetcher").assigned(frozenset((REQUESTS, p) for p in range(4)), {REQUESTS: 4})
    clock.pass_a_window()
    # Dealt over the 4 partitions it knows of, this process would take all 10 while its retry
    # topic's 4 partitions, held by others, take theirs too.
    assert share.allotment() == 0
    share.listener("fetcher.retry").assigned(frozenset(), {RETRIES: 4})
    assert share.allotment() == 5  # 2 + 1 + 1 + 1: 10 dealt over 8 slots, 2 to each partition 0
