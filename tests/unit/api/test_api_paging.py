"""Every list pages the same way (`limit` + `cursor` -> `{items, next_cursor}`), and no cursor, however
malformed, is anything but the documented 400."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.unit.api.conftest import Headers, new_account, new_portfolio


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def _read_all(
    client: httpx.AsyncClient, path: str, headers: Headers, limit: int
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(20):
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params = {"limit": limit, "cursor": page["next_cursor"]}
    raise AssertionError(f"{path} did not end")


@pytest.mark.asyncio
async def test_portfolios_and_accounts_are_read_whole_page_by_page_each_once_in_order(
    client: httpx.AsyncClient, alice: Headers
) -> None:
    portfolios = [await new_portfolio(client, alice, f"P{i}") for i in range(5)]
    accounts = [await new_account(client, alice, portfolios[0], label=f"A{i}") for i in range(5)]

    assert [p["id"] for p in await _read_all(client, "/v1/portfolios", alice, 2)] == portfolios
    listed = await _read_all(client, f"/v1/portfolios/{portfolios[0]}/accounts", alice, 2)
    assert [a["id"] for a in listed] == accounts
    one_page = (await client.get("/v1/portfolios", params={"limit": 5}, headers=alice)).json()
    assert one_page["next_cursor"] is None and len(one_page["items"]) == 5


@pytest.mark.asyncio
async def test_sync_runs_page_newest_first(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    requested = [
        (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).json() for _ in range(3)
    ]

    runs = await _read_all(client, f"/v1/accounts/{account_id}/sync-runs", alice, 1)

    assert [r["id"] for r in runs] == [r["request_id"] for r in reversed(requested)]


MALFORMED = [
    "x" * 201,
    "!!!not base64!!!",
    _b64("not json"),
    _b64("[1, 2]"),  # the old transactions format, and elements of the wrong types
    _b64(json.dumps({"l": "portfolios", "t": 5, "i": 7})),
    _b64(json.dumps({"l": "portfolios", "t": "2026-01-01T00:00:00", "i": "0" * 32})),  # naive
    _b64(json.dumps({"l": "portfolios", "t": "0001-01-01T00:00:00+01:00", "i": "0" * 32})),  # < year 1 in UTC
    _b64(json.dumps({"l": "portfolios", "t": "9999-12-31T23:59:59-01:00", "i": "0" * 32})),  # > 9999
    _b64(json.dumps({"l": "portfolios", "t": "2026-01-01T00:00:00Z", "i": "0" * 32, "x": 1})),
    _b64(json.dumps({"l": "nosuchlist", "t": "2026-01-01T00:00:00Z", "i": "0" * 32})),
    _b64(json.dumps({"l": ["portfolios"], "t": "2026-01-01T00:00:00Z", "i": "0" * 32})),
    _b64(json.dumps(None)),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("cursor", MALFORMED)
async def test_a_malformed_cursor_is_a_documented_400_on_every_list(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, cursor: str
) -> None:
    spec = (await client.get("/openapi.json")).json()
    lists = [
        "/v1/portfolios",
        f"/v1/portfolios/{portfolio_id}/accounts",
        f"/v1/accounts/{account_id}/snapshots",
        f"/v1/accounts/{account_id}/sync-runs",
        "/v1/transactions",
    ]
    templates = [
        "/v1/portfolios",
        "/v1/portfolios/{portfolio_id}/accounts",
        "/v1/accounts/{account_id}/snapshots",
        "/v1/accounts/{account_id}/sync-runs",
        "/v1/transactions",
    ]
    for path, template in zip(lists, templates, strict=True):
        response = await client.get(path, params={"cursor": cursor}, headers=alice)

        assert response.status_code == 400, (path, cursor, response.text)
        assert "invalid cursor" in response.json()["detail"]
        assert "400" in spec["paths"][template]["get"]["responses"]


@pytest.mark.asyncio
async def test_a_cursor_in_range_with_an_odd_offset_is_read_in_utc(
    client: httpx.AsyncClient, alice: Headers
) -> None:
    cursor = _b64(json.dumps({"l": "portfolios", "t": "0001-01-01T00:00:00-05:30", "i": "0" * 32}))

    response = await client.get("/v1/portfolios", params={"cursor": cursor}, headers=alice)

    assert response.status_code == 200, response.text


@pytest.mark.asyncio
async def test_one_lists_cursor_is_refused_by_another(client: httpx.AsyncClient, alice: Headers) -> None:
    portfolio = await new_portfolio(client, alice, "P")
    await new_portfolio(client, alice, "Q")
    await new_account(client, alice, portfolio)
    page = (await client.get("/v1/portfolios", params={"limit": 1}, headers=alice)).json()

    elsewhere = await client.get(
        f"/v1/portfolios/{portfolio}/accounts", params={"cursor": page["next_cursor"]}, headers=alice
    )

    assert elsewhere.status_code == 400
