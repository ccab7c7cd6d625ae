"""The embedded mode: every service in one process over the in-memory bus and SQLite.

The demo drives the system the way a user would: it signs up and creates its portfolios through
the HTTP API, lets the scheduler request syncs, the fetcher ask the simulated broker, and the ledger
record the answers; then it reads the consolidated holdings back through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.app import create_app
from services.api.context import ApiResources
from services.api.main import serve_app
from services.fetcher.brokers.simulated import CODE as SIMULATED
from services.fetcher.main import run_fetcher
from services.ledger.handlers import Ledger
from services.ledger.main import run_ledger
from services.scheduler.handlers import emit_due_syncs
from services.scheduler.main import run_scheduler
from services.user_admin import create_user
from services.webhooks.handlers import WebhookRecorder
from services.webhooks.main import delivery_loop, run_webhooks, webhook_sender
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine, session_factory, upgrade_schema
from shared.db.history_moves import move_history
from shared.db.tables import Schedule, SyncRun
from shared.events import utc_now
from shared.metrics import metrics_served
from shared.runtime import run_until_signalled
from shared.settings import Settings

# name -> (account label, the simulated broker's `market`): the names say what the accounts hold.
DEMO_PORTFOLIOS = {
    "India long-term": [("Zerodha (simulated)", "in"), ("Upstox (simulated)", "in")],
    "US stocks": [("Alpaca (simulated)", "us")],
}
CYCLE_TIMEOUT_S = 30.0


DEMO_OPERATOR = "operator@portfolio-sync.example"


@dataclass(frozen=True)
class DemoUser:
    token: str
    portfolios: dict[str, str]  # name -> id


async def run_demo(
    settings: Settings, *, cycles: int | None, host: str, port: int, database: Path | None
) -> int:
    with tempfile.TemporaryDirectory(prefix="portfolio-sync-demo-") as scratch:
        path = database or Path(scratch) / "demo.db"
        async with embedded_system(embedded_settings(settings, path)) as system:
            user = await system.call_api(_sign_up_demo_user)
            data = (
                f"Demo data: 1 user, {len(DEMO_PORTFOLIOS)} portfolios, "
                f"{sum(map(len, DEMO_PORTFOLIOS.values()))} simulated broker accounts (SQLite at {path})"
            )
            if cycles is not None:
                print(data)
                for cycle in range(1, cycles + 1):
                    started = time.monotonic()
                    synced = await system.run_sync_cycle()
                    took = time.monotonic() - started
                    print(f"cycle {cycle}/{cycles}: {synced} accounts synced in {took:.2f}s")
                await system.call_api(lambda client: _print_holdings(client, user))
                return 0
            # An operator too, made as the first one is anywhere: the dashboard's Operations page.
            operator = await create_user(system.settings, DEMO_OPERATOR, operator=True)
            await system.serve_until_interrupted(host, port, user, data, operator)
    return 0


def embedded_settings(settings: Settings, database: Path) -> Settings:
    """`settings` for one process: SQLite at `database`, the in-memory bus, a key if none is set, and
    a scheduler that looks every second."""
    return settings.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{database}",
            "bus": "memory",
            "credentials_keys": settings.credentials_keys
            if settings.credentials_keys.get_secret_value()
            else SecretStr(CredentialCipher.generate_key()),
            "scheduler_tick_seconds": min(settings.scheduler_tick_seconds, 1.0),
        }
    )


class EmbeddedSystem:
    """The four services of `embedded_system`, and ways to drive them."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], app: Any) -> None:
        self.settings = settings
        self.sessions = sessions
        self.app = app
        self.bus = app.state.demo_bus
        self.stop = asyncio.Event()

    async def call_api(self, action: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            return await action(client)

    async def run_sync_cycle(self) -> int:
        """Make every schedule due, let the scheduler emit, and wait until every run has finished."""
        now = utc_now()
        async with self.sessions.begin() as session:
            await session.execute(update(Schedule).values(next_run_at=now))
        emitted = await emit_due_syncs(self.sessions, self.bus, now=now, limit=10_000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CYCLE_TIMEOUT_S
        while await self._pending_runs():
            if loop.time() > deadline:
                raise RuntimeError(f"sync cycle did not finish within {CYCLE_TIMEOUT_S:.0f}s")
            await asyncio.sleep(0.05)  # poll the ledger's progress
        return emitted

    async def _pending_runs(self) -> int:
        async with self.sessions() as session:
            pending = await session.scalar(select(func.count()).where(SyncRun.status == "requested"))
        return pending or 0

    async def serve_until_interrupted(
        self, host: str, port: int, user: DemoUser, data: str, operator: str
    ) -> None:
        print(_banner(host, port, user, data, operator))
        # One process, one registry: all four services' metrics on METRICS_PORT, when set.
        with metrics_served(self.settings) as metrics_port:
            if metrics_port is not None:
                print(f"Metrics: http://{self.settings.metrics_host}:{metrics_port}/metrics")
            await run_until_signalled(lambda stop: self.serve(host, port, stop))

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Serve the API (and the dashboard) on host:port, with the scheduler running, until `stop`."""
        scheduler = asyncio.create_task(run_scheduler(self.settings, self.sessions, self.bus, self.stop))
        try:
            await serve_app(self.app, host=host, port=port, stop=stop)
        finally:
            self.stop.set()
            await scheduler


@contextlib.asynccontextmanager
async def embedded_system(settings: Settings) -> AsyncIterator[EmbeddedSystem]:
    """The services in this process over `settings`' database and an in-memory bus: the ledger, a
    fetcher of the simulated broker and the webhook delivery service run until the block ends;
    `serve` adds the API and the scheduler."""
    engine = create_engine(settings.database_url)
    await upgrade_schema(engine)
    await move_history(engine)  # a demo database kept from before versions
    bus = InMemoryBus()
    sessions = session_factory(engine)
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    app = create_app(settings, resources=ApiResources(engine=engine, bus=bus, cipher=cipher))
    app.state.demo_bus = bus
    system = EmbeddedSystem(settings, sessions, app)
    sender = webhook_sender(settings)
    recorder = WebhookRecorder(sessions=sessions)
    workers = [
        asyncio.create_task(run_ledger(Ledger(sessions=sessions, bus=bus), bus, system.stop)),
        asyncio.create_task(run_fetcher(settings, SIMULATED, bus, system.stop)),
        asyncio.create_task(
            run_webhooks(
                recorder,
                delivery_loop(settings, recorder, sender),
                bus,
                system.stop,
                poll_s=settings.webhooks_poll_seconds,
            )
        ),
    ]
    try:
        yield system
    finally:
        system.stop.set()
        await asyncio.gather(*workers)
        await sender.aclose()
        await engine.dispose()


async def _sign_up_demo_user(client: httpx.AsyncClient) -> DemoUser:
    signup = await _ok(client.post("/v1/users", json={"email": "demo@portfolio-sync.example"}))
    headers = {"Authorization": f"Bearer {signup['api_token']}"}
    portfolios = {}
    for name, accounts in DEMO_PORTFOLIOS.items():
        portfolio = await _ok(client.post("/v1/portfolios", json={"name": name}, headers=headers))
        portfolios[name] = portfolio["id"]
        for label, market in accounts:
            account = await _ok(
                client.post(
                    f"/v1/portfolios/{portfolio['id']}/accounts",
                    json={"broker": SIMULATED, "label": label, "sync_interval_seconds": 60},
                    headers=headers,
                )
            )
            await _ok(
                client.put(
                    f"/v1/accounts/{account['id']}/credentials",
                    json={"credentials": {"market": market}},
                    headers=headers,
                )
            )
    return DemoUser(token=signup["api_token"], portfolios=portfolios)


async def _ok(response: Awaitable[httpx.Response]) -> Any:
    result = await response
    if result.is_error:
        raise RuntimeError(
            f"demo API call failed: {result.request.method} {result.request.url.path} "
            f"-> {result.status_code} {result.text}"
        )
    return result.json() if result.content else None


async def _print_holdings(client: httpx.AsyncClient, user: DemoUser) -> None:
    headers = {"Authorization": f"Bearer {user.token}"}
    for name, portfolio_id in user.portfolios.items():
        view = await _ok(client.get(f"/v1/portfolios/{portfolio_id}/holdings", headers=headers))
        print(f"\n{name}")
        print(_table(view))


def _table(holdings: list[dict[str, Any]]) -> str:
    columns = [
        ("symbol", "Symbol"),
        ("exchange", "Exchange"),
        ("quantity", "Quantity"),
        ("average_price", "Avg price"),
        ("last_price", "Last price"),
        ("market_value", "Value"),
        ("currency", "Ccy"),
    ]
    rows = [
        [
            _cell(h.get(key), money=key not in {"symbol", "exchange", "quantity", "currency"})
            for key, _ in columns
        ]
        for h in holdings
    ]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (_, title) in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line([t for _, t in columns]), line(["-" * w for w in widths]), *map(line, rows)])


def _cell(value: Any, *, money: bool) -> str:
    if value is None:
        return "-"
    return f"{Decimal(value):,.2f}" if money else str(value)


def _banner(host: str, port: int, user: DemoUser, data: str, operator: str) -> str:
    base = f"http://{host}:{port}"
    first = next(iter(user.portfolios.values()))
    # The dashboard first: the address a person opens.
    return f"""Dashboard: {base}/ui/  (sign in with the API token below)

portfolio-sync demo is running: scheduler, fetcher (simulated broker), ledger and API in one process.
{data}

  API docs:        {base}/docs
  Your API token:  {user.token}
  Operator token:  {operator}  ({DEMO_OPERATOR}: the Operations page, /v1/admin)
  Try:             curl -H 'Authorization: Bearer {user.token}' {base}/v1/portfolios/{first}/holdings

Schedules fire every 60 s; POST /v1/accounts/{{id}}/sync syncs one now. Press Ctrl-C to stop.
"""
