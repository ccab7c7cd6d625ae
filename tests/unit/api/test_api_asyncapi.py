from __future__ import annotations

import json

import httpx
import pytest

from shared.schema_files import ASYNCAPI_FILE, SCHEMA_DIR


@pytest.mark.asyncio
async def test_the_asyncapi_document_is_served_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/asyncapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads((SCHEMA_DIR / ASYNCAPI_FILE).read_text())
    assert "holdingsChanges" in response.json()["channels"]
