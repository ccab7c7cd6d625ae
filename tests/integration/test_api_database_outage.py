"""While Postgres stops and comes back, the API answers 503 with Retry-After, never a 500.

The Postgres here is a dedicated pg-local instance: stopping the session's shared one would fail
every other test."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from services.api import ApiResources, create_app
from services.api.fast_reads import open_fast_reads
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine, upgrade_schema
from shared.settings import Settings
from tests.support import infra
from tests.support.waiting import eventually


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, str, int]]:
    """(url, workdir, port) of a Postgres only this test uses."""
    out, workdir, port = infra._start_local(infra.PG_LOCAL, also_next=False, prefix="pg-outage-")
    url = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("DATABASE_URL="))
    try:
        yield url, workdir, port
    finally:
        infra._stop_local(infra.PG_LOCAL, workdir)


def _pg_local(*args: str) -> None:
    subprocess.run([str(infra.PG_LOCAL), *args], check=True, capture_output=True, timeout=90)


async def test_the_api_answers_503_while_the_database_is_down_then_recovers(
    own_postgres: tuple[str, str, int],
) -> None:
    url, workdir, port = own_postgres
    engine = create_engine(url)
    await upgrade_schema(engine)
    settings = Settings(
        database_url=url,
        bus="memory",
        credentials_keys=SecretStr(CredentialCipher.generate_key()),
        token_rate_limit_per_minute=0,  # steady traffic, not a flood: only the outage should show
    )
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    answers: list[httpx.Response] = []
    try:
        async with (
            open_fast_reads(engine.url, max_connections=2) as fast_reads,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(
                    app=create_app(
                        settings,
                        resources=ApiResources(
                            engine=engine, bus=InMemoryBus(), cipher=cipher, fast_reads=fast_reads
                        ),
                    )
                ),
                base_url="http://api.test",
            ) as http,
        ):
            token = (await http.post("/v1/users", json={"email": "outage@example.com"})).json()["api_token"]
            headers = {"Authorization": f"Bearer {token}"}
            portfolio = (await http.post("/v1/portfolios", json={"name": "main"}, headers=headers)).json()
            account = await http.post(
                f"/v1/portfolios/{portfolio['id']}/accounts",
                json={"broker": "sim", "label": "x"},
                headers=headers,
            )
            sync_now = f"/v1/accounts/{account.json()['id']}/sync"
            holdings = f"/v1/accounts/{account.json()['id']}/holdings"  # the fast reads' own pool

            async def traffic(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    answers.append(await http.post("/v1/portfolios", json={"name": "p"}, headers=headers))
                    answers.append(await http.get("/v1/portfolios", headers=headers))
                    answers.append(await http.post(sync_now, headers=headers))
                    answers.append(await http.get(holdings, headers=headers))

            stop = asyncio.Event()
            running = asyncio.create_task(traffic(stop))

            def answered(status: int, since: int) -> Callable[[], Awaitable[bool]]:
                async def probe() -> bool:
                    if running.done():  # a request raised: the server had no answer to give
                        running.result()
                    return any(a.status_code == status for a in answers[since:])

                return probe

            # Stopped at different moments of the traffic: before, during and after a route's answer.
            for pause in (0.0, 0.15, 0.3):
                await asyncio.sleep(pause)
                await asyncio.to_thread(_pg_local, "stop", "--dir", workdir)
                await eventually(answered(503, len(answers)), what="a 503", timeout_s=30)
                await asyncio.to_thread(_pg_local, "start", "--dir", workdir, "--port", str(port))
                await eventually(answered(200, len(answers)), what="recovery", timeout_s=60)
            stop.set()
            await running
    finally:
        await engine.dispose()
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 201, 202, 409, 503}, statuses
    assert 202 in statuses, "no sync now went through: the traffic did not reach the route"
    holdings_answers = {a.status_code for a in answers if a.url.path.endswith("/holdings")}
    assert holdings_answers == {200, 503}, holdings_answers
    assert all(a.headers.get("retry-after") for a in answers if a.status_code == 503)
