"""The API's request metrics: labelled by route template and status class, never the raw path."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client import REGISTRY

DURATION_COUNT = "portfolio_sync_api_request_duration_seconds_count"


def _count(labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(DURATION_COUNT, labels) or 0.0


async def test_api_requests_are_timed_by_route_template_never_the_raw_path(client: httpx.AsyncClient) -> None:
    templated = {"method": "GET", "route": "/v1/accounts/{account_id}", "status_class": "4xx"}
    unmatched = {"method": "GET", "route": "unmatched", "status_class": "4xx"}
    odd_method = {"method": "other", "route": "unmatched", "status_class": "4xx"}
    before = [_count(labels) for labels in (templated, unmatched, odd_method)]
    account_id = uuid.uuid4()

    assert (await client.get(f"/v1/accounts/{account_id}")).status_code == 401
    assert (await client.get(f"/no/such/page/{account_id}")).status_code == 404
    assert (await client.request("BREW", f"/coffee/{account_id}")).status_code in {404, 405}

    after = [_count(labels) for labels in (templated, unmatched, odd_method)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    raw = [s for m in REGISTRY.collect() for s in m.samples if str(account_id) in repr(s.labels)]
    assert raw == [], "no label carries the raw path"
