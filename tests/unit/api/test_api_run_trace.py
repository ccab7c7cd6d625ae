"""`GET /v1/admin/runs/{run_id}/trace`: the operator's view of one run; nobody else's."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.user_admin import create_user
from shared.settings import Settings
from tests.unit.api.conftest import Headers


@pytest.fixture
async def operator(settings: Settings) -> Headers:
    token = await create_user(settings, f"op-{uuid.uuid4().hex[:8]}@example.com", operator=True)
    return {"Authorization": f"Bearer {token}"}


async def test_an_operator_sees_who_asked_for_a_manual_sync(
    client: httpx.AsyncClient, alice: Headers, account_id: str, operator: Headers
) -> None:
    accepted = await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)
    assert accepted.status_code == 202
    run_id = accepted.json()["request_id"]
    alice_id = (await client.get("/v1/me", headers=alice)).json()["id"]

    response = await client.get(f"/v1/admin/runs/{run_id}/trace", headers=operator)

    assert response.status_code == 200, response.text
    trace = response.json()
    assert (trace["run_id"], trace["account_id"], trace["broker"]) == (run_id, account_id, "sim")
    assert trace["status"] == "requested"
    assert trace["requested"]["trigger"] == "manual" and trace["requested"]["by_user"] == alice_id
    assert trace["attempts"] == [] and trace["stored"] == [] and trace["announced"] == []
    assert "ciphertext" not in response.text and "credentials" not in response.text


async def test_a_user_gets_403_even_for_their_own_run_and_an_unknown_run_is_404(
    client: httpx.AsyncClient, alice: Headers, account_id: str, operator: Headers
) -> None:
    run_id = (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).json()["request_id"]

    assert (await client.get(f"/v1/admin/runs/{run_id}/trace", headers=alice)).status_code == 403
    unknown = await client.get(f"/v1/admin/runs/{uuid.uuid4()}/trace", headers=operator)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "sync run not found"
