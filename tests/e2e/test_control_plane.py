"""The control plane end to end: every service its own OS process (api, scheduler, ledger and two
fetchers of `sim`), real Kafka, Postgres and HTTP, each process serving /metrics on its own port.

One stack per module (a fresh namespace and database), shared by the tests below in order: a cron
schedule firing at its times; pausing an account and a broker; lag rising while the fetchers are
stopped and falling to zero once they are back; two fetchers listed alive and a SIGKILLed one
listed gone; a dead letter replayed once after its cause is fixed; a stuck run requested again;
and each service's /metrics showing the syncs just done.

The scheduler reads the wall clock (no clock can be driven from outside), so the cron test moves
the schedule's `next_run_at` to a second from now, as if the clock had come to it, and then waits
for the real next minute, which the scheduler computed itself.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from services.scheduler.handlers import tick_request_id
from shared import topics
from shared.bus.kafka import KafkaBus
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine, session_factory
from shared.db.sync_runs import requested_run
from shared.events import Holding, HoldingSnapshot, SyncRequested, SyncTrigger, utc_now
from tests.support.databases import DatabaseCloner
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses, free_port
from tests.support.scraping import Scrape, scrape
from tests.support.waiting import eventually

PROCESSES = {
    "api": ["api"],
    "scheduler": ["scheduler"],
    "ledger": ["ledger"],
    "fetcher-a": ["fetcher", "--broker", "sim"],
    "fetcher-b": ["fetcher", "--broker", "sim"],
}
FETCHERS = ("fetcher-a", "fetcher-b")
PASSES = "portfolio_sync_scheduler_pass_duration_seconds_count"
POLL_S = 0.2  # between HTTP polls: a few requests a second per test


@dataclass
class Stack:
    services: ServiceProcesses
    base_url: str
    namespace: str
    database_url: str
    operator_token: str
    kafka: KafkaService
    metrics_ports: dict[str, int]

    def start(self, name: str) -> None:
        self.services.start(name, *PROCESSES[name], env={"METRICS_PORT": str(self.metrics_ports[name])})

    async def metrics(self, name: str) -> Scrape:
        return await scrape(self.metrics_ports[name])

    @asynccontextmanager
    async def bus(self) -> AsyncIterator[KafkaBus]:
        bus = KafkaBus(self.kafka.bootstrap_servers.split(","), namespace=self.namespace)
        await bus.start()
        try:
            yield bus
        finally:
            await bus.close()

    @asynccontextmanager
    async def database(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            yield conn
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def stack(
    kafka: KafkaService, cloner: DatabaseCloner, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    database_url = asyncio.run(cloner.fresh())
    namespace = f"ctl-{uuid.uuid4().hex[:8]}."
    port = free_port()
    services = ServiceProcesses(
        {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_NAMESPACE": namespace,
            "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
            "API_PORT": str(port),
            "SCHEDULER_TICK_SECONDS": "0.5",
            "SIMULATED_LATENCY_MS": "0",
            "MIN_SYNC_INTERVAL_SECONDS": "1",
            "FETCHER_HEARTBEAT_SECONDS": "0.5",
            "FETCHER_GONE_AFTER_SECONDS": "3",
            "STUCK_RUN_AFTER_SECONDS": "2",
            "SIGNUP_RATE_LIMIT_PER_HOUR": "0",
            "TOKEN_RATE_LIMIT_PER_MINUTE": "0",
        },
        tmp_path_factory.mktemp("control-plane"),
    )
    services.run("topics", "create", "--brokers", "sim")
    token = services.run("users", "create", "--operator", f"ops-{uuid.uuid4().hex[:8]}@e2e.test").strip()
    built = Stack(
        services,
        f"http://127.0.0.1:{port}",
        namespace,
        database_url,
        token.splitlines()[-1],
        kafka,
        {name: free_port() for name in PROCESSES},
    )
    for name in PROCESSES:
        built.start(name)
    try:
        yield built
    finally:
        codes = services.stop_all()
        print(services.logs())
        asyncio.run(cloner.drop(database_url))
        assert codes == dict.fromkeys(codes, 0), f"services did not stop cleanly: {codes}"


@dataclass
class Clients:
    user: httpx.AsyncClient
    operator: httpx.AsyncClient


@asynccontextmanager
async def clients(stack: Stack) -> AsyncIterator[Clients]:
    """A new user's client and the operator's, once the API answers."""
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=15) as user,
        httpx.AsyncClient(
            base_url=stack.base_url, timeout=60, headers={"Authorization": f"Bearer {stack.operator_token}"}
        ) as operator,
    ):

        async def api_ready() -> bool:
            stack.services.assert_alive()
            try:
                return (await user.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(api_ready, timeout_s=60, what="the API process to be ready", interval_s=POLL_S)
        signed_up = await user.post("/v1/users", json={"email": f"{uuid.uuid4().hex}@e2e.test"})
        user.headers["Authorization"] = f"Bearer {signed_up.json()['api_token']}"
        yield Clients(user, operator)


async def new_account(http: httpx.AsyncClient) -> str:
    """A sim account, once the sync its new schedule fires at once has succeeded."""
    portfolio = (await http.post("/v1/portfolios", json={"name": "e2e"})).json()
    created = await http.post(
        f"/v1/portfolios/{portfolio['id']}/accounts", json={"broker": "sim", "label": "e2e"}
    )
    assert created.status_code == 201, created.text
    account_id: str = created.json()["id"]
    await eventually(
        lambda: _has_run(http, account_id, status="succeeded"),
        timeout_s=60,
        what="the new account's first scheduled sync",
        interval_s=POLL_S,
    )
    return account_id


async def runs_of(http: httpx.AsyncClient, account_id: str) -> list[dict[str, Any]]:
    answer = await http.get(f"/v1/accounts/{account_id}/sync-runs", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def _has_run(
    http: httpx.AsyncClient, account_id: str, *, status: str, run_id: uuid.UUID | None = None
) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in await runs_of(http, account_id)
            if r["status"] == status and (run_id is None or r["id"] == str(run_id))
        ),
        None,
    )


async def scheduler_passes_after(stack: Stack, passes: int) -> None:
    """Wait until the scheduler has begun and finished `passes` more passes over due schedules."""
    start = (await stack.metrics("scheduler")).value(PASSES)

    async def done() -> bool:
        stack.services.assert_alive()
        return (await stack.metrics("scheduler")).value(PASSES) >= start + passes

    await eventually(done, timeout_s=30, what=f"{passes} scheduler passes", interval_s=POLL_S)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


async def test_a_cron_schedule_fires_at_its_next_run_and_then_on_its_next_match(stack: Stack) -> None:
    async with clients(stack) as http:
        account_id = await new_account(http.user)
        put = await http.user.put(
            f"/v1/accounts/{account_id}/schedule",
            json={"kind": "cron", "cron": "* * * * *", "timezone": "Asia/Kolkata"},
        )
        assert put.status_code == 200, put.text
        preview = [_at(t) for t in put.json()["next_runs"]]
        assert len(preview) == 5 and all(t.second == 0 and t.microsecond == 0 for t in preview)
        assert [b - a for a, b in itertools.pairwise(preview)] == [timedelta(minutes=1)] * 4
        runs_before = put.json()["run_count"]

        # The clock cannot be driven: bring the next fire to a second from now instead.
        soon = (utc_now() + timedelta(seconds=1)).replace(microsecond=0)
        async with stack.database() as db:
            await db.execute(
                "UPDATE schedules SET next_run_at = $1 WHERE account_id = $2", soon, uuid.UUID(account_id)
            )
        fired = await eventually(
            lambda: _has_run(
                http.user, account_id, status="succeeded", run_id=tick_request_id(uuid.UUID(account_id), soon)
            ),
            timeout_s=30,
            what="the sync of the tick at next_run_at",
            interval_s=POLL_S,
        )
        assert fired["trigger"] == "schedule"
        assert _at(fired["requested_at"]) >= soon

        schedule = (await http.user.get(f"/v1/accounts/{account_id}/schedule")).json()
        assert schedule["run_count"] == runs_before + 1
        last_run = _at(schedule["last_run_at"])
        assert last_run >= soon
        # What the scheduler process stored as the next fire: the cron's next match, a whole minute.
        minute = _next_minute(last_run)
        assert _at(schedule["next_run_at"]) == minute

        at_minute = await eventually(
            lambda: _has_run(
                http.user,
                account_id,
                status="succeeded",
                run_id=tick_request_id(uuid.UUID(account_id), minute),
            ),
            timeout_s=90,
            what=f"the cron's own fire at {minute:%H:%M}",
            interval_s=POLL_S,
        )
        assert minute <= _at(at_minute["requested_at"]) < minute + timedelta(seconds=10)
        after = (await http.user.get(f"/v1/accounts/{account_id}/schedule")).json()
        assert after["run_count"] == runs_before + 2
        assert _at(after["next_run_at"]) == minute + timedelta(minutes=1)
        assert (await http.user.delete(f"/v1/accounts/{account_id}/schedule")).status_code == 204


async def _run_ids(http: httpx.AsyncClient, account_id: str) -> set[str]:
    return {r["id"] for r in await runs_of(http, account_id)}


async def _new_scheduled_run(http: httpx.AsyncClient, account_id: str, seen: set[str]) -> bool:
    return any(
        r["id"] not in seen and r["trigger"] == "schedule" and r["status"] == "succeeded"
        for r in await runs_of(http, account_id)
    )


async def test_pausing_an_account_or_its_broker_stops_its_requests_until_resumed(stack: Stack) -> None:
    async with clients(stack) as http:
        account_id = await new_account(http.user)
        schedule_url = f"/v1/accounts/{account_id}/schedule"
        put = await http.user.put(schedule_url, json={"kind": "interval", "interval_seconds": 1})
        assert put.status_code == 200, put.text
        seen = await _run_ids(http.user, account_id)
        await eventually(
            lambda: _new_scheduled_run(http.user, account_id, seen),
            what="the every-second schedule to fire",
            interval_s=POLL_S,
        )

        # The account: paused, nothing is requested over passes that would have fired it twice.
        paused = await http.user.patch(schedule_url, json={"enabled": False})
        assert paused.status_code == 200, paused.text
        assert paused.json()["state"] == "paused" and paused.json()["next_runs"] == []
        await scheduler_passes_after(stack, 1)  # a pass already running when it was paused is over
        seen = await _run_ids(http.user, account_id)
        count = (await http.user.get(schedule_url)).json()["run_count"]
        await scheduler_passes_after(stack, 5)
        assert await _run_ids(http.user, account_id) == seen, "a paused account's sync was requested"
        assert (await http.user.get(schedule_url)).json()["run_count"] == count
        assert (await http.user.patch(schedule_url, json={"enabled": True})).json()["state"] == "active"
        await eventually(
            lambda: _new_scheduled_run(http.user, account_id, seen),
            what="a scheduled sync after the account was resumed",
            interval_s=POLL_S,
        )

        # The broker: an operator pauses sim; its accounts say why, and nothing is requested.
        reason = f"outage drill {uuid.uuid4().hex[:6]}"
        pause = await http.operator.post("/v1/admin/brokers/sim/pause", json={"reason": reason})
        assert pause.status_code == 200, pause.text
        assert pause.json()["paused"]["reason"] == reason
        try:
            await scheduler_passes_after(stack, 1)
            seen = await _run_ids(http.user, account_id)
            requests = (await stack.metrics("scheduler")).value(
                "portfolio_sync_sync_requests_total", broker="sim", trigger="schedule"
            )
            account = (await http.user.get(f"/v1/accounts/{account_id}")).json()
            assert account["paused_by_operator"] == reason
            assert (await http.user.get(schedule_url)).json()["state"] == "paused_by_operator"
            now = await http.user.post(f"/v1/accounts/{account_id}/sync")
            assert now.status_code == 409 and reason in now.text
            await scheduler_passes_after(stack, 5)
            assert await _run_ids(http.user, account_id) == seen, "a paused broker's sync was requested"
            assert (await stack.metrics("scheduler")).value(
                "portfolio_sync_sync_requests_total", broker="sim", trigger="schedule"
            ) == requests
        finally:
            resumed = await http.operator.post("/v1/admin/brokers/sim/resume")
        assert resumed.status_code == 200 and resumed.json()["paused"] is None
        await eventually(
            lambda: _new_scheduled_run(http.user, account_id, seen),
            what="a scheduled sync after the broker was resumed",
            interval_s=POLL_S,
        )
        assert (await http.user.delete(schedule_url)).status_code == 204


def _requests(count: int) -> list[OutgoingMessage]:
    """Sync requests of accounts nobody has (the ledger skips their snapshots), spread over partitions."""
    return [
        OutgoingMessage.of(
            topics.sync_requests("sim"),
            SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL),
        )
        for _ in range(count)
    ]


async def _request_lag(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await http.get("/v1/admin/lag")
    assert answer.status_code == 200, answer.text
    return [
        row
        for row in answer.json()["items"]
        if row["group"] == "fetcher.sim" and row["topic"] == topics.sync_requests("sim")
    ]


async def test_lag_is_reported_while_the_fetchers_are_down_and_falls_to_zero_when_they_are_back(
    stack: Stack,
) -> None:
    async with clients(stack) as http, stack.bus() as bus:
        # Enough requests that every partition has an offset committed by the group.
        await bus.publish(_requests(64))

        async def every_partition_caught_up() -> bool:
            rows = await _request_lag(http.operator)
            return len(rows) == 4 and all(r["lag"] == 0 for r in rows)

        await eventually(
            every_partition_caught_up,
            timeout_s=60,
            what="the fetchers to commit on every partition",
            interval_s=POLL_S,
        )

        for name in FETCHERS:
            assert stack.services.stop(name) == 0
        await bus.publish(_requests(40))

        async def lagging() -> int:
            return sum(r["lag"] for r in await _request_lag(http.operator))

        assert await eventually(lagging, what="lag on sync.requests.sim", interval_s=POLL_S) >= 40

        for name in FETCHERS:
            stack.start(name)

        async def caught_up() -> bool:
            stack.services.assert_alive()
            report = (await http.operator.get("/v1/admin/lag")).json()
            return report["total"] == 0 and await lagging() == 0

        await eventually(caught_up, timeout_s=90, what="every group's lag to fall to zero", interval_s=POLL_S)


async def _fetchers(http: httpx.AsyncClient) -> dict[int, dict[str, Any]]:
    answer = await http.get("/v1/admin/fetchers")
    assert answer.status_code == 200, answer.text
    return {f["pid"]: f for f in answer.json()["items"] if f["broker"] == "sim"}


async def test_two_fetchers_are_listed_alive_and_a_killed_one_gone(stack: Stack) -> None:
    a, b = (stack.services.pid(name) for name in FETCHERS)
    async with clients(stack) as http:

        async def both_alive() -> bool:
            stack.services.assert_alive()
            listed = await _fetchers(http.operator)
            return all(pid in listed and listed[pid]["alive"] for pid in (a, b))

        await eventually(both_alive, what="both fetchers listed alive", interval_s=POLL_S)

        stack.services.kill_hard("fetcher-b")

        async def b_gone() -> dict[int, dict[str, Any]] | None:
            listed = await _fetchers(http.operator)
            return listed if not listed[b]["alive"] else None

        listed = await eventually(b_gone, what="the killed fetcher listed gone", interval_s=POLL_S)
        assert listed[a]["alive"], "the fetcher that still runs is listed gone"
        stack.start("fetcher-b")  # the stack goes on with two fetchers


async def test_a_dead_letter_is_replayed_once_after_its_cause_is_fixed(stack: Stack) -> None:
    async with clients(stack) as http, stack.bus() as bus, stack.database() as db:
        account_id = await new_account(http.user)
        assert (await http.user.delete(f"/v1/accounts/{account_id}/schedule")).status_code == 204
        holdings = (await http.user.get(f"/v1/accounts/{account_id}/holdings")).json()
        # The fault: a rule in the database that wrongly rejects this account's snapshots (as a bad
        # migration's constraint would). The ledger's write fails, not transiently: dead-lettered.
        constraint = f"e2e_rejects_{uuid.uuid4().hex[:8]}"
        await db.execute(
            f"ALTER TABLE snapshots ADD CONSTRAINT {constraint} "
            f"CHECK (account_id <> '{account_id}') NOT VALID"
        )
        snapshot = HoldingSnapshot(
            account_id=uuid.UUID(account_id),
            request_id=uuid.uuid4(),
            broker="sim",
            taken_at=utc_now(),
            holdings=tuple(
                Holding(
                    symbol=h["symbol"],
                    exchange=h["exchange"],
                    currency=h["currency"],
                    quantity=Decimal(h["quantity"]) + 1,
                    average_price=Decimal(h["average_price"]),
                )
                for h in holdings
            ),
        )
        await bus.publish([OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, snapshot)])
        # And a record nobody can decode, on another of the ledger's topics.
        await bus.publish([OutgoingMessage(topics.SYNC_FAILURES, account_id, b"{not json")])

        wanted = (topics.dead_letters(topics.HOLDINGS_SNAPSHOTS), topics.dead_letters(topics.SYNC_FAILURES))

        async def dead_letters() -> dict[str, list[dict[str, Any]]] | None:
            # One topic at a time: without `topic` the API also reads the .dlq topics of brokers
            # whose topics this deployment never created, and answers 503 (see the report).
            found: dict[str, list[dict[str, Any]]] = {}
            for topic in wanted:
                answer = await http.operator.get("/v1/admin/dead-letters", params={"topic": topic})
                assert answer.status_code == 200, answer.text
                [listing] = answer.json()["items"]
                found[topic] = [d for d in listing["newest"] if d["key"] == account_id]
            return found if all(found.values()) else None

        listed = await eventually(dead_letters, what="both records in the dead letters", interval_s=POLL_S)
        [rejected] = listed[topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)]
        assert constraint in rejected["reason"] and not rejected["replayed"]
        [malformed] = listed[topics.dead_letters(topics.SYNC_FAILURES)]
        assert "not a valid SyncFailed" in malformed["reason"]
        snapshots_url = f"/v1/accounts/{account_id}/snapshots"
        assert str(snapshot.event_id) not in {
            s["id"] for s in (await http.user.get(snapshots_url)).json()["items"]
        }

        await db.execute(f"ALTER TABLE snapshots DROP CONSTRAINT {constraint}")  # the fix
        replay = await http.operator.post(
            "/v1/admin/dead-letters/replay", json={"topic": topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)}
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["replayed"] == 1

        async def applied() -> list[dict[str, Any]]:
            items = (await http.user.get(snapshots_url)).json()["items"]
            return [s for s in items if s["id"] == str(snapshot.event_id)]

        [stored] = await eventually(applied, what="the replayed snapshot stored", interval_s=POLL_S)
        assert stored["status"] == "applied"
        positions = {
            h["symbol"]: Decimal(h["quantity"])
            for h in (await http.user.get(f"/v1/accounts/{account_id}/holdings")).json()
        }
        assert positions == {h.symbol: h.quantity for h in snapshot.holdings}

        again = await http.operator.post(
            "/v1/admin/dead-letters/replay", json={"topic": topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)}
        )
        assert again.json()["replayed"] == 0 and again.json()["already_replayed"] == 1
        cli = stack.services.run("dlq", "replay", topics.dead_letters(topics.HOLDINGS_SNAPSHOTS))
        assert cli.startswith("0 replayed, 1 replayed before"), cli
        after = (await dead_letters()) or {}
        assert [d["replayed"] for d in after[topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)]] == [True]


async def test_a_run_left_requested_is_requested_again_by_the_scheduler(stack: Stack) -> None:
    async with clients(stack) as http:
        account_id = await new_account(http.user)
        assert (await http.user.delete(f"/v1/accounts/{account_id}/schedule")).status_code == 204
        # As an API that crashed between recording a run and publishing its request leaves it.
        request = SyncRequested(
            account_id=uuid.UUID(account_id),
            broker="sim",
            trigger=SyncTrigger.MANUAL,
            occurred_at=utc_now() - timedelta(seconds=30),
        )
        engine = create_engine(stack.database_url)
        try:
            async with session_factory(engine).begin() as session:
                session.add(requested_run(request))
        finally:
            await engine.dispose()

        run = await eventually(
            lambda: _has_run(http.user, account_id, status="succeeded", run_id=request.event_id),
            what="the stuck run to be requested again and succeed",
            interval_s=POLL_S,
        )
        assert run["trigger"] == "manual"
        async with stack.database() as db:
            rerequested_at = await db.fetchval(
                "SELECT rerequested_at FROM sync_runs WHERE id = $1", request.event_id
            )
        assert rerequested_at is not None and rerequested_at > request.occurred_at
        stuck = (await http.operator.get("/v1/admin/stuck-runs")).json()["items"]
        assert str(request.event_id) not in {r["id"] for r in stuck}


async def _all_metrics(stack: Stack) -> dict[str, Scrape]:
    return {name: await stack.metrics(name) for name in PROCESSES}


async def test_each_service_s_metrics_show_the_syncs_it_just_did(stack: Stack) -> None:
    async with clients(stack) as http:
        account_id = await new_account(http.user)
        before = await _all_metrics(stack)

        seen = await _run_ids(http.user, account_id)
        once = await http.user.put(
            f"/v1/accounts/{account_id}/schedule", json={"kind": "once", "run_at": utc_now().isoformat()}
        )
        assert once.status_code == 200, once.text
        await eventually(
            lambda: _new_scheduled_run(http.user, account_id, seen),
            what="the once schedule's sync",
            interval_s=POLL_S,
        )
        manual = await http.user.post(f"/v1/accounts/{account_id}/sync")
        assert manual.status_code == 202, manual.text
        await eventually(
            lambda: _has_run(
                http.user, account_id, status="succeeded", run_id=uuid.UUID(manual.json()["request_id"])
            ),
            what="the manual sync",
            interval_s=POLL_S,
        )

        async def counted() -> dict[str, Scrape] | None:
            after = await _all_metrics(stack)
            fetched = sum(
                after[f].value("portfolio_sync_fetcher_syncs_total", broker="sim", outcome="succeeded")
                - before[f].value("portfolio_sync_fetcher_syncs_total", broker="sim", outcome="succeeded")
                for f in FETCHERS
            )
            applied = after["ledger"].value(
                "portfolio_sync_ledger_snapshots_total", outcome="applied"
            ) - before["ledger"].value("portfolio_sync_ledger_snapshots_total", outcome="applied")
            return after if fetched >= 2 and applied >= 2 else None

        after = await eventually(counted, what="the fetchers' and the ledger's counters", interval_s=POLL_S)

    def grew(name: str, metric: str, **labels: str) -> float:
        return after[name].value(metric, **labels) - before[name].value(metric, **labels)

    assert grew("scheduler", "portfolio_sync_scheduler_ticks_claimed_total", broker="sim") >= 1
    assert grew("scheduler", "portfolio_sync_sync_requests_total", broker="sim", trigger="schedule") >= 1
    assert grew("api", "portfolio_sync_sync_requests_total", broker="sim", trigger="manual") == 1
    assert (
        grew(
            "api",
            "portfolio_sync_api_request_duration_seconds_count",
            method="POST",
            route="/v1/accounts/{account_id}/sync",
            status_class="2xx",
        )
        == 1
    )
    assert (
        grew(
            "api",
            "portfolio_sync_api_request_duration_seconds_count",
            method="PUT",
            route="/v1/accounts/{account_id}/schedule",
            status_class="2xx",
        )
        == 1
    )
    assert grew("ledger", "portfolio_sync_ledger_write_duration_seconds_count") >= 1
    assert grew("ledger", "portfolio_sync_consumed_records_total", group="ledger") >= 2
