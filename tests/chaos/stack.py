"""The services under test as real OS processes, over a real Kafka and Postgres, syncing many
accounts of the changing fake broker (Alpaca's API, served by the test over real HTTP)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx

from services.fetcher.testing import serve_fake
from shared.credentials import CredentialCipher
from shared.events import utc_now
from tests.chaos.changing_broker import ChangingBroker
from tests.support.processes import ServiceProcesses, free_port
from tests.support.waiting import eventually

BROKER = "alpaca"
COMMANDS = {"api": ["api"], "scheduler": ["scheduler"], "fetcher": ["fetcher", "--broker", BROKER]}
COMMANDS["ledger"] = ["ledger"]


@dataclass(frozen=True)
class Topology:
    """How many processes of each service run (names: fetcher-a, fetcher-b, ledger-a, ...)."""

    fetchers: int = 2
    ledgers: int = 1
    schedulers: int = 1

    def names(self) -> list[str]:
        return [
            "api",
            *(f"scheduler-{c}" for c in "abc"[: self.schedulers]),
            *(f"fetcher-{c}" for c in "abcdef"[: self.fetchers]),
            *(f"ledger-{c}" for c in "abc"[: self.ledgers]),
        ]


def command_of(name: str) -> list[str]:
    return COMMANDS[name.split("-")[0]]


@dataclass
class ChaosStack:
    services: ServiceProcesses
    api_url: str
    namespace: str
    database_dsn: str  # for asyncpg
    bootstrap_servers: str
    broker: ChangingBroker
    token: str = ""
    accounts: list[uuid.UUID] = field(default_factory=list)
    key_ids: dict[uuid.UUID, str] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)

    def start(self, name: str, **env: str) -> None:
        """Start (or restart) process `name`; `env` adds to its environment (a crash point, say)."""
        self.services.start(name, *command_of(name), env=env)
        self.started.add(name)

    @asynccontextmanager
    async def database(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(self.database_dsn)
        try:
            yield conn
        finally:
            await conn.close()

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url, timeout=30, headers={"Authorization": f"Bearer {self.token}"}
        )


def _environment(
    database_url: str, bootstrap_servers: str, namespace: str, api_port: int, broker_url: str, key: str
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "KAFKA_NAMESPACE": namespace,
        "CREDENTIALS_KEYS": key,
        "API_PORT": str(api_port),
        "SCHEDULER_TICK_SECONDS": "0.5",
        "BROKER_BASE_URLS": json.dumps({BROKER: broker_url}),
        # The fake has no limit: the test's load, not a token bucket, sets the pace.
        "BROKER_LIMITS": json.dumps({BROKER: {"rate_per_s": 2000, "burst": 200, "concurrency": 20}}),
        "LEDGER_BATCH_SIZE": "50",  # many batches: every kill lands mid-stream
        "SIGNUP_RATE_LIMIT_PER_HOUR": "0",
        "TOKEN_RATE_LIMIT_PER_MINUTE": "0",
        "FETCHER_HEARTBEAT_SECONDS": "1",
        "LOG_LEVEL": "INFO",
    }


@asynccontextmanager
async def running_stack(
    *,
    database_url: str,
    bootstrap_servers: str,
    topology: Topology,
    accounts: int,
    log_dir: Path,
    env: dict[str, dict[str, str]] | None = None,
) -> AsyncIterator[ChaosStack]:
    """Create the topics, the accounts and their owner, start every process of `topology` (`env`:
    more environment for some of them), and yield once the API answers; stop them all at the end."""
    broker = ChangingBroker()
    async with serve_fake(broker) as broker_url:
        key = CredentialCipher.generate_key()
        namespace = f"chaos-{uuid.uuid4().hex[:8]}."
        port = free_port()
        services = ServiceProcesses(
            _environment(database_url, bootstrap_servers, namespace, port, broker_url, key), log_dir
        )
        services.run("topics", "create", "--brokers", BROKER)
        stack = ChaosStack(
            services=services,
            api_url=f"http://127.0.0.1:{port}",
            namespace=namespace,
            database_dsn=database_url.replace("postgresql+asyncpg://", "postgresql://", 1),
            bootstrap_servers=bootstrap_servers,
            broker=broker,
        )
        try:
            for name in topology.names():
                stack.start(name, **(env or {}).get(name, {}))
            await _sign_up(stack)
            await _create_accounts(stack, accounts, CredentialCipher(key))
            yield stack
        finally:
            services.stop_all()


async def _sign_up(stack: ChaosStack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:

        async def api_ready() -> bool:
            stack.services.assert_alive()
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(api_ready, timeout_s=90, what="the API process to be ready", interval_s=0.2)
        answer = await http.post("/v1/users", json={"email": f"{uuid.uuid4().hex}@chaos.test"})
        assert answer.status_code == 201, answer.text
        stack.token = answer.json()["api_token"]


async def _create_accounts(stack: ChaosStack, count: int, cipher: CredentialCipher) -> None:
    """Accounts straight in the database, credentials set, schedules far off: only the test's "sync
    now" (or a fault that makes schedules due) requests syncs."""
    async with stack.database() as db:
        user_id = await db.fetchval("SELECT user_id FROM api_tokens ORDER BY created_at DESC LIMIT 1")
        portfolio_id = uuid.uuid4()
        await db.execute(
            "INSERT INTO portfolios (id, user_id, name, created_at, active) "
            "VALUES ($1, $2, 'chaos', $3, true)",
            portfolio_id,
            user_id,
            utc_now(),
        )
        later = utc_now() + timedelta(days=1)
        for n in range(count):
            account_id = uuid.uuid4()
            key_id = f"KEY{n:04d}{account_id.hex[:8]}"
            await db.execute(
                "INSERT INTO broker_accounts (id, portfolio_id, broker, label, created_at, "
                "consecutive_failures, needs_reauth, ledger_version) "
                "VALUES ($1, $2, $3, $4, $5, 0, false, 0)",
                account_id,
                portfolio_id,
                BROKER,
                f"chaos {n}",
                utc_now(),
            )
            await db.execute(
                "INSERT INTO credentials (account_id, ciphertext, updated_at) VALUES ($1, $2, $3)",
                account_id,
                cipher.encrypt({"key_id": key_id, "secret_key": stack.broker.secret}),
                utc_now(),
            )
            await db.execute(
                "INSERT INTO schedules (account_id, kind, interval_seconds, next_run_at, enabled, run_count) "
                "VALUES ($1, 'interval', 3600, $2, true, 0)",
                account_id,
                later,
            )
            stack.accounts.append(account_id)
            stack.key_ids[account_id] = key_id
