from __future__ import annotations

import time

from services.fetcher.limits import BrokerLimits, TokenBucket
from services.fetcher.registry import create_adapter
from shared.settings import Settings


async def test_the_bucket_lets_a_burst_through_then_holds_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=50, burst=5)
    started = time.monotonic()
    grants = []
    for _ in range(15):
        await bucket.acquire()
        grants.append(time.monotonic() - started)
    assert grants[14] >= (15 - 5) / 50 * 0.95, "after the burst, one request per 1/rate"
    assert grants[4] < grants[14] / 4, "the burst went at once, far ahead of the rate-limited tail"


def test_settings_override_a_brokers_documented_limits_field_by_field() -> None:
    _, limiter = create_adapter("sim", Settings(broker_limits={"sim": {"rate_per_s": 7}}))
    assert limiter.limits == BrokerLimits(rate_per_s=7, burst=500, concurrency=512)


def test_retry_after_reads_seconds_and_http_dates_and_refuses_nonsense() -> None:
    import httpx

    from services.fetcher.http import retry_after_seconds

    assert retry_after_seconds(httpx.Headers({"Retry-After": "7"})) == 7
    in_a_minute = retry_after_seconds(httpx.Headers({"Retry-After": "Wed, 21 Oct 2099 07:28:00 -0000"}))
    assert in_a_minute is not None and in_a_minute > 0
    assert retry_after_seconds(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0
    assert retry_after_seconds(httpx.Headers({"Retry-After": "inf"})) is None
    assert retry_after_seconds(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Headers()) is None
