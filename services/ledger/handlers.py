"""Apply batches of snapshots, failures and reviews: each batch in one transaction, idempotently on
event id, and while one batch is written the next is already planned.

A batch is prepared first: its events are deduplicated, the accounts and sync runs they touch are
read, and `plan_batch` decides every row to write. Then it is written, in one transaction. The
consumer prepares batch N+1 while batch N is being written (see `shared.bus.consumer`), so for what
N touches — its events, accounts and runs — N+1 builds on N's planned outcome instead of on the
database, which does not have it yet. Should N's write fail, the consumer calls `forget` and handles
both again one at a time.

The batch commits before the consumer commits its offsets, so a crash redelivers at worst a batch
that is already applied, and the dedupe makes that redelivery change nothing. HoldingsChanged goes
into the outbox in the same transaction; after the commit it is relayed from memory, while the next
batch is written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.metrics import SKIPPED_FOR_VANISHED_ACCOUNTS, count_written
from services.ledger.outbox import OutboxRelay
from services.ledger.plan import AccountState, BatchPlan, RunState, UnknownAccount, plan_batch
from services.ledger.store import ConcurrentWrite, Encoded, LedgerStore, PositionsCache
from services.ledger.versions import PriceMemo
from shared.bus.consumer import Outcomes, Write
from shared.bus.port import MessageBus
from shared.events import Event, HoldingSnapshot, SyncFailed
from shared.log_context import bound_run
from shared.test_hooks import LEDGER_AFTER_COPY, crash_point

log = logging.getLogger(__name__)

CONSUMER = "ledger"

__all__ = ["CONSUMER", "ConcurrentWrite", "Ledger", "UnknownAccount"]


@dataclass
class _Planned:
    """What the last prepared batch will have done once written: the next batch builds on it."""

    event_ids: set[uuid.UUID] = field(default_factory=set)
    accounts: dict[uuid.UUID, AccountState] = field(default_factory=dict)
    runs: dict[uuid.UUID, RunState] = field(default_factory=dict)
    snapshots: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # new snapshot -> its account

    @classmethod
    def written(
        cls, events: Sequence[Event], accounts: dict[uuid.UUID, AccountState], runs: dict[uuid.UUID, RunState]
    ) -> _Planned:
        """The batch's accounts and runs as they will be once written: every run then exists, and
        nothing is left to write for the next batch unless that batch touches it again, and each
        account's `ledger_version` is the one the write leaves (the next batch's fence)."""
        for account in accounts.values():
            if account.touched:
                account.ledger_version += 1
            account.touched = False
        for run in runs.values():
            run.exists, run.touched = True, False
        snapshots = {
            e.event_id: e.account_id for e in events if isinstance(e, HoldingSnapshot) and e.replaces is None
        }
        return cls({e.event_id for e in events}, accounts, runs, snapshots)


async def _nothing(already_applied: int, vanished: int) -> Outcomes:
    return {"already_applied": already_applied, "account_gone": vanished}


def _plan_and_encode(
    store: LedgerStore,
    events: Sequence[Event],
    accounts: dict[uuid.UUID, AccountState],
    runs: dict[uuid.UUID, RunState],
    replaceable: frozenset[uuid.UUID],
    prices: PriceMemo,
) -> tuple[BatchPlan, Encoded]:
    plan = plan_batch(events, accounts, runs, consumer=CONSUMER, replaceable=replaceable, prices=prices)
    encoded = store.encode(plan)
    if encoded:
        # In the COPY text now: these rows (and the decoded snapshots the holdings are) need not
        # outlive preparing, and the next batch is prepared while this one is written. What the
        # write reads beside the text stays: the snapshots (metrics), the outbox (relay), the prices.
        plan.holdings, plan.versions, plan.derived = [], [], []
        plan.processed, plan.attempts, plan.new_runs = [], [], []
    return plan, encoded


class Ledger:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], bus: MessageBus, batch_size: int = 2000
    ) -> None:
        self._sessions = sessions
        # Preparing only reads, and needs no transaction of its own: each statement sees what is
        # committed when it runs (READ COMMITTED, as inside one), and the write is fenced on what
        # they read. Without one, a batch's prepare spares a BEGIN and a ROLLBACK.
        self._reads = async_sessionmaker(
            sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self.batch_size = batch_size  # events per batch, at most
        self.relay = OutboxRelay(sessions=sessions, bus=bus, batch=batch_size)
        self._positions = PositionsCache()
        self._prices = PriceMemo()
        self._planned = _Planned()
        self.skipped_for_vanished_accounts = 0
        """Events skipped because their account no longer exists (see `_skip_vanished`)."""

    async def apply_batch(self, events: Sequence[Event]) -> None:
        """Prepare and write one batch, with nothing else in flight."""
        write = await self.prepare(events)
        await write()
        await self.relay.settle()

    async def prepare(self, events: Sequence[Event]) -> Write:
        before = self._planned
        async with self._reads() as session:
            store = LedgerStore(session, consumer=CONSUMER)
            fresh = [e for e in await store.new_events(events) if e.event_id not in before.event_ids]
            already_applied = len(events) - len(fresh)
            if not fresh:
                return functools.partial(_nothing, already_applied, 0)
            ids = {e.account_id for e in fresh}
            accounts = {i: before.accounts[i] for i in ids & before.accounts.keys()}
            accounts |= await store.accounts(ids - accounts.keys(), self._positions)
            new = len(fresh)
            fresh = self._skip_vanished(fresh, accounts)
            if not fresh:
                return functools.partial(_nothing, already_applied, new)
            run_ids = {e.request_id for e in fresh if isinstance(e, HoldingSnapshot | SyncFailed)}
            runs = {i: before.runs[i] for i in run_ids & before.runs.keys()}
            runs |= await store.runs(run_ids - runs.keys())
            targets = {
                e.replaces: e.account_id for e in fresh if isinstance(e, HoldingSnapshot) and e.replaces
            }
            # A snapshot of the batch being written is not in the database yet, but will be.
            replaceable = frozenset(t for t, a in targets.items() if before.snapshots.get(t) == a)
            replaceable |= await store.replaceable({t: a for t, a in targets.items() if t not in replaceable})
        # In a worker thread, like decoding (see `shared.bus.consumer`): the event loop keeps the
        # previous batch's write going meanwhile.
        plan, encoded = await asyncio.to_thread(
            _plan_and_encode, store, fresh, accounts, runs, replaceable, self._prices
        )
        plan.outcomes.update(already_applied=already_applied, account_gone=new - len(fresh))
        self._planned = _Planned.written(fresh, accounts, runs)
        for account in accounts.values():
            # An account with strays is read again: the cache keeps positions alone.
            if account.current_snapshot_id is not None and not account.strays:
                self._positions.remember(
                    account.id,
                    account.current_snapshot_id,
                    account.ledger_version,
                    account.positions,
                    account.hashed,
                )
        return functools.partial(self.write, plan, encoded)

    def _skip_vanished(self, events: list[Event], accounts: dict[uuid.UUID, AccountState]) -> list[Event]:
        """Events of an account the database does not have: deleted by its owner while its sync was
        in flight (or never created). There is nothing left to apply them to, and retrying or
        dead-lettering them would not bring the account back: they are skipped, logged and counted.
        (An account deleted after this check fails the write on its foreign key; the batch is then
        handled again, and this check skips it.)"""
        kept = []
        for event in events:
            if event.account_id in accounts:
                kept.append(event)
                continue
            self.skipped_for_vanished_accounts += 1
            SKIPPED_FOR_VANISHED_ACCOUNTS.inc()
            run_id = event.request_id if isinstance(event, HoldingSnapshot | SyncFailed) else event.event_id
            with bound_run(run_id, account_id=event.account_id):
                log.warning(
                    "event skipped: its account no longer exists",
                    extra={"event_id": str(event.event_id), "event_type": type(event).__name__},
                )
        return kept

    def forget(self) -> None:
        self._planned = _Planned()

    async def write(self, plan: BatchPlan, encoded: Encoded) -> Outcomes:
        """Write the plan; return what its events came to (applied, late, held, failed, ...)."""
        started = time.perf_counter()
        async with self._sessions.begin() as session:
            await LedgerStore(session, consumer=CONSUMER).write(plan, encoded)
            crash_point(LEDGER_AFTER_COPY)
        self._prices.remember(plan.prices)
        count_written(plan, seconds=time.perf_counter() - started)
        await self.relay.hand_over(plan.outbox)
        return plan.outcomes
