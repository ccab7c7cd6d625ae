from __future__ import annotations

import httpx
import pytest


@pytest.mark.asyncio
async def test_create_list_and_read_portfolios(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    created = await client.post("/v1/portfolios", json={"name": "  Retirement "}, headers=alice)
    other = await client.post("/v1/portfolios", json={"name": "Kids"}, headers=alice)

    assert created.status_code == 201
    assert created.json()["name"] == "Retirement"
    listed = await client.get("/v1/portfolios", headers=alice)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["items"]] == ["Retirement", "Kids"]
    read = await client.get(f"/v1/portfolios/{other.json()['id']}", headers=alice)
    assert read.status_code == 200
    assert read.json() == other.json()


@pytest.mark.asyncio
async def test_a_duplicate_name_is_a_conflict_for_the_same_user_only(
    client: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    assert (await client.post("/v1/portfolios", json={"name": "Main"}, headers=alice)).status_code == 201

    again = await client.post("/v1/portfolios", json={"name": "Main"}, headers=alice)
    bobs = await client.post("/v1/portfolios", json={"name": "Main"}, headers=bob)

    assert again.status_code == 409
    assert "Main" in again.json()["detail"]
    assert bobs.status_code == 201
    # The failed insert rolled back cleanly: alice still has exactly one.
    assert len((await client.get("/v1/portfolios", headers=alice)).json()["items"]) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": ["Main"]}])
async def test_bad_portfolio_bodies_are_422(
    client: httpx.AsyncClient, alice: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post("/v1/portfolios", json=body, headers=alice)

    assert response.status_code == 422


@pytest.mark.asyncio
async def test_a_portfolio_id_that_is_not_a_uuid_is_422(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await client.get("/v1/portfolios/42", headers=alice)

    assert response.status_code == 422
