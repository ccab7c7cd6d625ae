"""The faults, one at a time, each injected while the steady load runs.

A fault gets the stack and what it may need (its own Kafka or Postgres to stop); it returns once
the fault is over (a killed process stays dead: its peers must take over)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.events import utc_now
from shared.test_hooks import CRASH_AT_ENV, LEDGER_AFTER_COPY, LEDGER_AFTER_RELAY_ACK
from tests.chaos.local_servers import LocalServer
from tests.chaos.stack import ChaosStack, Topology
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

KAFKA_DOWN_S = 20.0
POSTGRES_DOWN_S = 5.0
STORM_S = 30.0
STORM_STEP_S = 3.0
SCHEDULER_ROUNDS = 5
CONSUMING = '"consuming"'  # what a consume loop logs once it has subscribed
PROXY_DELAY_S = 0.3  # per chunk, each way
PROXY_SLOW_S = 10.0
PROXY_CUT_S = 15.0


@dataclass(frozen=True)
class FaultContext:
    stack: ChaosStack
    kafka: LocalServer | None  # set when the fault has a broker of its own to stop
    postgres: LocalServer | None
    resources: contextlib.AsyncExitStack  # what must outlive the fault (a proxy), closed after the run


Inject = Callable[[FaultContext], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    key: str  # the test's id
    name: str
    what: str  # for docs/reliability.md
    inject: Inject
    topology: Topology = field(default_factory=Topology)
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # per process, at its first start
    own_kafka: bool = False
    own_postgres: bool = False
    short: bool = False  # part of the short form that `make test` runs


async def _snapshots_stored(stack: ChaosStack) -> int:
    async with stack.database() as db:
        return int(await db.fetchval("SELECT count(*) FROM snapshots"))


async def _mid_stream(stack: ChaosStack, more: int = 20) -> None:
    """Wait until `more` further snapshots are stored: the pipeline is busy, batches in flight."""
    target = await _snapshots_stored(stack) + more

    async def reached() -> bool:
        stack.services.assert_alive()
        return await _snapshots_stored(stack) >= target

    await eventually(reached, timeout_s=60, what=f"{more} more snapshots stored", interval_s=0.02)


async def kill_a_fetcher(ctx: FaultContext) -> None:
    await _mid_stream(ctx.stack)
    ctx.stack.services.kill_hard("fetcher-a")


async def kill_a_ledger(ctx: FaultContext) -> None:
    await _mid_stream(ctx.stack)
    ctx.stack.services.kill_hard("ledger-a")


async def _crashed_at_its_point(ctx: FaultContext) -> None:
    """ledger-a was started armed: wait for it to kill itself there, then start it again unarmed."""
    services = ctx.stack.services

    async def crashed() -> bool:
        return services.returncode("ledger-a") is not None

    await eventually(crashed, timeout_s=90, what="the ledger to reach its crash point", interval_s=0.05)
    assert services.returncode("ledger-a") == -9, "the ledger ended, but not at its crash point"
    ctx.stack.start("ledger-a", **{CRASH_AT_ENV: ""})


async def stop_kafka(ctx: FaultContext) -> None:
    assert ctx.kafka is not None
    await _mid_stream(ctx.stack)
    await ctx.kafka.stop("--keep-data")
    await asyncio.sleep(KAFKA_DOWN_S)  # the fault's own duration
    await ctx.kafka.start()


async def restart_postgres(ctx: FaultContext) -> None:
    assert ctx.postgres is not None
    await _mid_stream(ctx.stack)
    await ctx.postgres.stop()
    await asyncio.sleep(POSTGRES_DOWN_S)  # the fault's own duration
    await ctx.postgres.start()


def slow_then_cut_kafka_of(service: str) -> Callable[[FaultContext], Awaitable[None]]:
    """The fault: `service` talks to Kafka through a proxy, which slows its link, then cuts it,
    then restores it."""

    async def fault(ctx: FaultContext) -> None:
        assert ctx.kafka is not None and ctx.kafka.proxied_port and ctx.kafka.proxied_target
        proxy = TcpProxy(ctx.kafka.proxied_port, ctx.kafka.proxied_target)
        await proxy.start()
        ctx.resources.push_async_callback(proxy.close)
        await asyncio.to_thread(ctx.stack.services.stop, service)
        ctx.stack.start(service, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{proxy.port}")
        await _mid_stream(ctx.stack)
        # A fetcher's partner may carry the stream while it starts.
        await eventually(
            lambda: asyncio.sleep(0, proxy.connections > 0),
            what=f"{service} to reach Kafka through the proxy",
        )
        proxy.delay_s = PROXY_DELAY_S
        await asyncio.sleep(PROXY_SLOW_S)  # the fault's own duration
        proxy.delay_s = 0
        proxy.cut()
        await asyncio.sleep(PROXY_CUT_S)  # the fault's own duration
        before = proxy.connections
        proxy.restore()
        await _mid_stream(ctx.stack)  # the stack works again, the service through the proxy
        await eventually(
            lambda: asyncio.sleep(0, proxy.connections > before),
            what=f"{service} to come back through the proxy",
        )

    return fault


async def make_every_schedule_due(ctx: FaultContext) -> None:
    """Two schedulers run; every account falls due at once, several times over."""
    for _ in range(SCHEDULER_ROUNDS):
        due = utc_now() - timedelta(seconds=1)
        async with ctx.stack.database() as db:
            await db.execute("UPDATE schedules SET next_run_at = $1", due)

            async def all_claimed(due: datetime = due) -> bool:
                ctx.stack.services.assert_alive()
                return not await db.fetchval("SELECT count(*) FROM schedules WHERE next_run_at <= $1", due)

            await eventually(all_claimed, timeout_s=60, what="every due schedule claimed", interval_s=0.1)
    for name in ("scheduler-a", "scheduler-b"):  # both took part: the test is of two, not of one
        assert "sync requests emitted" in ctx.stack.services.log_of(name), f"{name} emitted nothing"


async def rebalance_storm(ctx: FaultContext) -> None:
    """Extra fetchers join and leave every few seconds; fetcher-a and -b stay."""
    services = ctx.stack.services
    loop = asyncio.get_running_loop()
    end = loop.time() + STORM_S
    extra = ("fetcher-c", "fetcher-d")
    turn = 0
    while loop.time() < end:
        name = extra[turn % 2]
        started = services.log_of(name).count(CONSUMING) if turn >= 2 else 0
        ctx.stack.start(name)

        async def joined(name: str = name, started: int = started) -> bool:
            services.assert_alive()
            return services.log_of(name).count(CONSUMING) >= started + 2  # both its consume loops

        await eventually(joined, timeout_s=60, what=f"{name} to join its groups", interval_s=0.1)
        await asyncio.sleep(STORM_STEP_S)  # the storm's rhythm
        if turn % 3 == 2:
            services.kill_hard(name)
        else:
            code = await asyncio.to_thread(services.stop, name)
            assert code == 0, f"{name} exited {code} on SIGTERM"  # a clean leave, or a failed run
        turn += 1


FAULTS = [
    Fault(
        "kill-fetcher",
        "kill -9 one of two fetchers",
        "SIGKILL one of the two fetcher processes of the broker while batches are in flight; the other "
        "takes its partitions over.",
        kill_a_fetcher,
        short=True,
    ),
    Fault(
        "kill-ledger",
        "kill -9 one of two ledgers",
        "SIGKILL one of two ledger processes mid-batch; the other takes its partitions and its outbox "
        "rows over.",
        kill_a_ledger,
        topology=Topology(ledgers=2),
    ),
    Fault(
        "ledger-crash-after-copy",
        "ledger killed after COPY, before commit",
        "The ledger SIGKILLs itself (test hook) after writing a batch and before committing it; restarted.",
        _crashed_at_its_point,
        env={"ledger-a": {CRASH_AT_ENV: f"{LEDGER_AFTER_COPY}:8"}},
        short=True,
    ),
    Fault(
        "ledger-crash-after-relay-ack",
        "ledger killed after relay ack, before outbox delete",
        "The ledger SIGKILLs itself (test hook) once Kafka acknowledged relayed HoldingsChanged and "
        "before their outbox delete commits; restarted.",
        _crashed_at_its_point,
        env={"ledger-a": {CRASH_AT_ENV: f"{LEDGER_AFTER_RELAY_ACK}:8"}},
    ),
    Fault(
        "ledger-crash-after-relay-ack-of-two",
        "ledger killed after relay ack, beside a second ledger",
        "As above, while a second ledger runs: its outbox sweep finds the dead one's rows (published, "
        "their delete never committed).",
        _crashed_at_its_point,
        topology=Topology(ledgers=2),
        env={"ledger-a": {CRASH_AT_ENV: f"{LEDGER_AFTER_RELAY_ACK}:8"}},
    ),
    Fault(
        "kafka-stop",
        "Kafka stopped 20 s",
        f"The (only) Kafka broker is stopped for {KAFKA_DOWN_S:.0f} s and started again on its data.",
        stop_kafka,
        own_kafka=True,
    ),
    Fault(
        "postgres-restart",
        "Postgres restarted",
        f"Postgres is stopped (fast shutdown) for {POSTGRES_DOWN_S:.0f} s and started again.",
        restart_postgres,
        own_postgres=True,
    ),
    Fault(
        "two-schedulers",
        "two schedulers",
        f"Two scheduler processes; every account's schedule falls due at once, {SCHEDULER_ROUNDS} times.",
        make_every_schedule_due,
        topology=Topology(schedulers=2),
        # Small claims, so that both schedulers are at the due rows at once.
        env={name: {"SCHEDULER_BATCH_SIZE": "20"} for name in ("scheduler-a", "scheduler-b")},
    ),
    Fault(
        "rebalance-storm",
        "rebalance storm",
        f"Fetchers join and leave (SIGTERM, or SIGKILL every third) every {STORM_STEP_S:.0f} s for "
        f"{STORM_S:.0f} s.",
        rebalance_storm,
    ),
    Fault(
        "ledger-kafka-proxy",
        "ledger's Kafka link slowed, then cut",
        f"The ledger reaches Kafka through a TCP proxy that delays every chunk {PROXY_DELAY_S} s for "
        f"{PROXY_SLOW_S:.0f} s, then drops every connection and refuses new ones for {PROXY_CUT_S:.0f} s.",
        slow_then_cut_kafka_of("ledger-a"),
        own_kafka=True,
    ),
    Fault(
        "fetcher-kafka-proxy",
        "a fetcher's Kafka link slowed, then cut",
        f"One of the two fetchers reaches Kafka through a TCP proxy that delays every chunk "
        f"{PROXY_DELAY_S} s for {PROXY_SLOW_S:.0f} s, then drops every connection and refuses new ones "
        f"for {PROXY_CUT_S:.0f} s; the other takes its partitions while it is cut off.",
        slow_then_cut_kafka_of("fetcher-a"),
        own_kafka=True,
    ),
]
