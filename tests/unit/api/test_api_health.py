from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from services.api import ApiResources, create_app
from services.api.app import api_routes
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine
from shared.settings import Settings
from tests.support.waiting import eventually


@pytest.mark.asyncio
async def test_healthz_and_readyz_answer_when_all_is_well(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


@pytest.mark.asyncio
async def test_readyz_is_503_with_the_reason_when_the_database_is_down(
    settings: Settings, cipher: CredentialCipher, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'api.db'}")
    threads_before = set(threading.enumerate())
    app = create_app(settings, resources=ApiResources(engine=engine, bus=InMemoryBus(), cipher=cipher))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test"
        ) as client:
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
    finally:
        await engine.dispose()

    async def connect_threads_ended() -> bool:
        # aiosqlite's thread of the failed connection still reports to this loop: it must end
        # before the loop closes (else "Event loop is closed" in that thread, under load).
        return all(not t.is_alive() for t in set(threading.enumerate()) - threads_before)

    await eventually(connect_threads_ended, what="the failed connection's aiosqlite thread to end")
    assert ready.status_code == 503
    assert ready.json() == {"detail": "database unavailable (OperationalError)"}
    assert health.status_code == 200


@pytest.mark.asyncio
async def test_the_docs_describe_every_route_and_bearer_auth(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    docs = await client.get("/docs")
    spec = (await client.get("/openapi.json")).json()

    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = [op for path in spec["paths"].values() for op in path.values()]
    routes = [(r.path, m.lower()) for r in api_routes(create_app(settings)) for m in r.methods]
    assert len(operations) == len(routes)
    assert all(op.get("tags") for op in operations)
    assert all(op.get("summary") for op in operations)
    statements = spec["paths"]["/v1/accounts/{account_id}/statements"]["post"]
    assert list(statements["requestBody"]["content"]) == ["text/csv"]
    assert {"202", "409", "415", "422"} <= set(statements["responses"])
    quantity = spec["components"]["schemas"]["PositionOut"]["properties"]["quantity"]
    assert quantity["type"] == "string"
    transactions = spec["paths"]["/v1/transactions"]["get"]
    assert {"account_id", "portfolio_id", "symbol", "from", "to", "origin", "limit", "cursor"} == {
        p["name"] for p in transactions["parameters"]
    }
    assert {"200", "400", "404"} <= set(transactions["responses"])
    accept = spec["paths"]["/v1/accounts/{account_id}/held-snapshot/accept"]["post"]
    assert {"202", "404", "409", "503"} <= set(accept["responses"])
    run_status = spec["components"]["schemas"]["SyncRunOut"]["properties"]["status"]["description"]
    assert all(s in run_status for s in ("requested", "retrying", "succeeded", "failed"))
