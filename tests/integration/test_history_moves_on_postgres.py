"""Moving old-layout history on real Postgres (`shared/db/history_moves.py`, run by
`portfolio-sync db upgrade`): a run killed mid-way leaves every read as it was, the next run
completes it with nothing moved twice or missed, and syncs the ledger applies while the history moves
come out right."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api.storage import account_snapshot
from services.ledger.handlers import ConcurrentWrite, Ledger
from shared.bus.memory import InMemoryBus
from shared.db.engine import upgrade_schema
from shared.db.history_moves import move_history
from shared.db.tables import HistoryMove, InstrumentPrice, PositionVersion, Snapshot, SnapshotHolding
from shared.events import Holding, HoldingSnapshot
from shared.test_hooks import CRASH_AT_ENV, HISTORY_BEFORE_COMMIT
from tests.support.old_layout import OLD_REVISION, OldSnapshot, fill_old_layout
from tests.support.positions import positions_of

T0 = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
ACCOUNTS, SYNCS, SYMBOLS = 6, 24, 8
CLI = Path(sys.executable).parent / "portfolio-sync"
Positions = dict[str, tuple[Decimal, Decimal]]
History = dict[uuid.UUID, list[OldSnapshot]]


def _price(symbol: int, at: datetime) -> str:
    """The market's price, the same for every account holding the instrument (the series is shared)."""
    return str(100 + symbol + (at - T0) // timedelta(minutes=15))


def _holdings(account: int, sync: int, at: datetime) -> dict[str, tuple[str, str]]:
    """Five instruments an account holds; one grows every ten syncs, one is sold after twenty syncs
    and another after forty."""
    held = {}
    for j in range(5):
        symbol = (account + j) % SYMBOLS
        if (j == 4 and sync >= 20) or (j == 3 and sync >= 40):
            continue
        quantity = 10 + (sync // 10 if j == 0 else 0)
        held[f"S{symbol}"] = (str(quantity), _price(symbol, at))
    return held


def _history() -> History:
    """Per account: SYNCS applied snapshots every 15 minutes, a late one, and for every other account
    a held empty one after the last."""
    history: History = {}
    for i in range(ACCOUNTS):
        snapshots = []
        for k in range(SYNCS):
            at = T0 + timedelta(minutes=15 * k)
            snapshots.append(OldSnapshot(at, "applied", _holdings(i, k, at)))
        late = T0 + timedelta(minutes=15 * 7 + 7)
        snapshots.append(OldSnapshot(late, "late", _holdings(i, 3, late)))
        if i % 2 == 0:
            snapshots.append(OldSnapshot(T0 + timedelta(minutes=15 * SYNCS), "held", {}))
        history[uuid.uuid4()] = snapshots
    return history


async def _old_database(engine: AsyncEngine) -> History:
    history = _history()
    await upgrade_schema(engine, OLD_REVISION)
    await fill_old_layout(engine, history)
    await upgrade_schema(engine)
    return history


async def _reads(
    sessions: async_sessionmaker[AsyncSession], history: dict[uuid.UUID, list[uuid.UUID]]
) -> dict[tuple[uuid.UUID, str], Positions]:
    """What the API answers for each account: each snapshot by id, as of each one's time, now."""
    answers: dict[tuple[uuid.UUID, str], Positions] = {}
    async with sessions() as session:
        for account, snapshot_ids in history.items():
            times = await session.execute(
                select(Snapshot.id, Snapshot.taken_at).where(Snapshot.id.in_(snapshot_ids))
            )
            for snapshot_id, taken_at in times:
                found = await account_snapshot(session, account_id=account, snapshot_id=snapshot_id)
                assert found is not None
                answers[(account, f"snapshot {snapshot_id}")] = {
                    h.symbol: (h.quantity, h.last_price) for h in found[1]
                }
                at_time = await positions_of(session, account, as_of=taken_at)
                answers[(account, f"as of {taken_at}")] = {
                    p.symbol: (p.quantity, p.last_price) for p in at_time
                }
            now = await positions_of(session, account)
            answers[(account, "now")] = {p.symbol: (p.quantity, p.last_price) for p in now}
    return answers


def _ids(history: History) -> dict[uuid.UUID, list[uuid.UUID]]:
    return {account: [s.id for s in snapshots] for account, snapshots in history.items()}


async def _count(sessions: async_sessionmaker[AsyncSession], model: type[object]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _expected_rows(history: History) -> tuple[int, int]:
    """(versions, prices) the move writes: per account, each applied snapshot against the one before."""
    versions = prices = 0
    for snapshots in history.values():
        before: dict[str, tuple[str, str]] = {}
        for s in sorted((s for s in snapshots if s.status == "applied"), key=lambda s: s.taken_at):
            versions += sum(1 for k, (q, _) in s.holdings.items() if k not in before or before[k][0] != q)
            versions += sum(1 for k in before if k not in s.holdings)
            prices += sum(1 for k, (_, p) in s.holdings.items() if k not in before or before[k][1] != p)
            before = dict(s.holdings)
    return versions, prices


def _upgrade(url: str, *, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    env["DATABASE_URL"] = url
    if crash_at is not None:
        env[CRASH_AT_ENV] = crash_at
    return subprocess.run(
        [str(CLI), "db", "upgrade", "--history-batch", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_a_move_killed_mid_way_reads_as_before_and_the_next_run_completes_it(
    empty_engine: AsyncEngine,
) -> None:
    history = await _old_database(empty_engine)
    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    before = await _reads(sessions, _ids(history))
    holding_rows = await _count(sessions, SnapshotHolding)
    url = empty_engine.url.render_as_string(hide_password=False)

    killed = await asyncio.to_thread(_upgrade, url, crash_at=f"{HISTORY_BEFORE_COMMIT}:3")

    assert killed.returncode == -9, killed.stderr
    assert killed.stderr.count("db upgrade: history") == 2, killed.stderr
    assert await _count(sessions, HistoryMove) == ACCOUNTS - 4, "two batches of two committed, the third not"
    async with sessions() as session:
        with_versions = await session.scalar(select(func.count(func.distinct(PositionVersion.account_id))))
    assert with_versions == 4
    assert await _reads(sessions, _ids(history)) == before, "half moved, every read as before"

    resumed = await asyncio.to_thread(_upgrade, url)

    assert resumed.returncode == 0, resumed.stderr
    assert "history moved into versions: 2/2 accounts" in resumed.stdout
    assert "accounts/s" in resumed.stderr and "ETA" in resumed.stderr
    assert await _count(sessions, HistoryMove) == 0
    assert await _reads(sessions, _ids(history)) == before
    versions, prices = _expected_rows(history)
    assert (await _count(sessions, PositionVersion), await _count(sessions, InstrumentPrice)) == (
        versions,
        prices,
    )
    late_rows = sum(
        len(s.holdings) for snapshots in history.values() for s in snapshots if s.status == "late"
    )
    assert await _count(sessions, SnapshotHolding) == late_rows < holding_rows


def _sync(account: uuid.UUID, index: int, sync: int) -> HoldingSnapshot:
    at = T0 + timedelta(minutes=15 * sync)
    return HoldingSnapshot(
        account_id=account,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=at,
        holdings=tuple(
            Holding(
                symbol=symbol,
                exchange="NSE",
                currency="INR",
                quantity=Decimal(quantity),
                average_price=Decimal(100),
                last_price=Decimal(price),
            )
            for symbol, (quantity, price) in _holdings(index, sync, at).items()
        ),
    )


async def test_syncs_the_ledger_applies_while_history_moves_come_out_right(empty_engine: AsyncEngine) -> None:
    """The ledger applies three rounds of syncs to every account (the third drops an instrument the
    old history held), an account a batch, while the history moves one account per batch; whichever
    went first for an account, its old reads are as before, its new snapshots read as sent, and
    nothing is moved twice."""
    history = await _old_database(empty_engine)
    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    before = await _reads(sessions, _ids(history))
    ledger = Ledger(sessions=sessions, bus=InMemoryBus())
    accounts = list(history)
    rounds = [
        [_sync(a, i, SYNCS + 1 + r + (10 if r == 2 else 0)) for i, a in enumerate(accounts)] for r in range(3)
    ]
    order: list[str] = []

    async def sync_all() -> None:
        # An account a batch, from the last by id while the move goes from the first: some accounts
        # sync before they move, some after.
        for sync in [
            [event] for r in rounds for event in sorted(r, key=lambda e: e.account_id, reverse=True)
        ]:
            while True:  # as the consume loop does: a batch refused by the fence is planned again
                try:
                    await ledger.apply_batch(sync)
                    break
                except ConcurrentWrite:
                    ledger.forget()
                    order.append("refused")
            order.append("ledger")

    async def move() -> None:
        await move_history(empty_engine, accounts_per_batch=1, on_batch=lambda _: order.append("move"))

    await asyncio.gather(move(), sync_all())

    assert (Counter(order)["move"], Counter(order)["ledger"]) == (ACCOUNTS, 3 * ACCOUNTS)
    new_ids = {a: [s.event_id for s in (r[i] for r in rounds)] for i, a in enumerate(accounts)}
    after = await _reads(sessions, {a: [*_ids(history)[a], *new_ids[a]] for a in accounts})
    expected = dict(before)
    for i, account in enumerate(accounts):
        for r in rounds:
            sent = {h.symbol: (h.quantity, h.last_price) for h in r[i].holdings}
            expected[(account, f"snapshot {r[i].event_id}")] = sent
            expected[(account, f"as of {r[i].taken_at}")] = sent
        expected[(account, "now")] = {h.symbol: (h.quantity, h.last_price) for h in rounds[-1][i].holdings}
    assert after == expected
    assert await _count(sessions, HistoryMove) == 0
