"""One chaos run: steady load, one fault, the load goes on a while, then a last "sync now" of every
account once the broker has moved on, and the counts once everything has settled."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared import topics
from tests.chaos import report
from tests.chaos.faults import Fault, FaultContext
from tests.chaos.load import SyncLoad, sync_now
from tests.chaos.observer import TopicObserver
from tests.chaos.stack import BROKER, ChaosStack

LEVEL_ENV = "CHAOS_LEVEL"  # short (default: the form `make test` runs) or long (`make chaos`)


@dataclass(frozen=True)
class Level:
    accounts: int
    rate_per_s: float  # "sync now" requests per second
    after_fault_s: float  # load goes on this long once the fault is over
    settle_s: float  # longest wait for the last requests to land; past it, what is missing is lost


LEVELS = {
    "short": Level(accounts=30, rate_per_s=15, after_fault_s=4, settle_s=60),
    "long": Level(accounts=150, rate_per_s=30, after_fault_s=20, settle_s=120),
}


def level_name() -> str:
    name = os.environ.get(LEVEL_ENV, "short")
    if name not in LEVELS:
        raise ValueError(f"{LEVEL_ENV} must be one of {', '.join(LEVELS)}, not {name!r}")
    return name


async def _until(probe: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Poll `probe` until it holds or `timeout_s` passes; whether it held (not an error: the report
    counts what is missing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await probe():
            return True
        await asyncio.sleep(0.2)  # poll interval
    return False


async def _last_round(stack: ChaosStack, deadline_s: float) -> list[uuid.UUID]:
    """The broker moves on once more; every account is synced again (asked until the API accepts),
    so its last answer is what every account's current positions must end as."""
    stack.broker.advance()
    accepted: list[uuid.UUID] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    async with stack.http() as http:
        for account_id in stack.accounts:
            while isinstance(answer := await sync_now(http, account_id), str):
                assert loop.time() < deadline, f"the API refuses syncs after the fault ended: {answer}"
                await asyncio.sleep(0.5)  # the API said 503: ask again, as a client would
            accepted.append(answer)
    return accepted


async def _settle(
    stack: ChaosStack, requested: set[uuid.UUID], changes: TopicObserver, timeout_s: float
) -> None:
    async def every_request_stored() -> bool:
        async with stack.database() as db:
            stored = await db.fetchval(
                "SELECT count(DISTINCT request_id) FROM snapshots WHERE request_id = ANY($1::uuid[])",
                list(requested),
            )
        return bool(stored >= len(requested))

    async def every_change_announced() -> bool:
        async with stack.database() as db:
            waiting = await db.fetchval("SELECT count(*) FROM outbox")
            changed = {
                r["id"] for r in await db.fetch("SELECT id FROM snapshots WHERE announcement_id IS NOT NULL")
            }
        return not waiting and changed <= {c.snapshot_id for c in changes.changes()}

    await _until(every_request_stored, timeout_s)
    await _until(every_change_announced, timeout_s / 2)


async def run_fault(stack: ChaosStack, fault: Fault, ctx: FaultContext) -> report.ChaosReport:
    level = LEVELS[level_name()]
    started = time.perf_counter()
    changes = TopicObserver(stack.bootstrap_servers, stack.namespace, topics.HOLDINGS_CHANGES)
    requests = TopicObserver(stack.bootstrap_servers, stack.namespace, topics.sync_requests(BROKER))
    await changes.start()
    await requests.start()
    load = SyncLoad(stack, rate_per_s=level.rate_per_s)
    load.start()
    try:
        await fault.inject(ctx)
        await asyncio.sleep(level.after_fault_s)  # the load goes on after the fault
    finally:
        await load.stop()
    accepted = load.accepted + await _last_round(stack, deadline_s=level.settle_s)
    async with stack.database() as db:
        scheduled = {r["id"] for r in await db.fetch("SELECT id FROM sync_runs WHERE trigger = 'schedule'")}
    await _settle(stack, set(accepted) | scheduled, changes, level.settle_s)
    await changes.stop()
    await requests.stop()
    return await report.count(
        stack,
        fault=fault.name,
        accepted=accepted,
        refused=sum(load.refused.values()),
        requested_twice=requests.repeated_ids(),
        changes=changes.changes(),
        seconds=time.perf_counter() - started,
    )
