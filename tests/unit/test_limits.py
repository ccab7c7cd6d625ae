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
    assert grants[4] < 0.05, "the burst goes at once"
    assert grants[14] >= (15 - 5) / 50 * 0.95, "then one request per 1/rate"


def test_settings_override_a_brokers_documented_limits_field_by_field() -> None:
    _, limiter = create_adapter("sim", Settings(broker_limits={"sim": {"rate_per_s": 7}}))
    assert limiter.limits == BrokerLimits(rate_per_s=7, burst=500, concurrency=512)
