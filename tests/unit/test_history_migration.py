"""Migration 0014 and moving history (`shared/db/history_moves.py`) on a database filled in the old
layout (every snapshot with its own holdings): the schema upgrade moves nothing and every read gives
what it gave before; moving turns the applied snapshots into versions and prices, the others keep
their rows, and every read still gives the same; what the ledger writes between the two is not
moved again and comes out right. Run again on Postgres by tests/integration/test_history_on_postgres.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api.storage import account_snapshot
from services.ledger.handlers import ConcurrentWrite, Ledger
from shared.bus.memory import InMemoryBus
from shared.db.engine import upgrade_schema
from shared.db.history_moves import move_history
from shared.db.tables import HistoryMove, PositionVersion, SnapshotHolding
from shared.events import Holding, HoldingSnapshot
from tests.support.old_layout import OLD_REVISION, OldSnapshot, fill_old_layout
from tests.support.positions import positions_of

T0 = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
# name: (minutes after T0, status, {symbol: (quantity, last price)})
SNAPSHOTS = {
    "first": (0, "applied", {"TCS": ("10", "110"), "INFY": ("5", "20")}),
    "prices_moved": (15, "applied", {"TCS": ("10", "111"), "INFY": ("5", "21")}),
    "late": (10, "late", {"TCS": ("9", "109")}),
    "changed": (30, "applied", {"TCS": ("12", "112")}),
    "held": (45, "held", {}),
}
# An as-of time of each snapshot an as-of read lands on (the held one never was the positions).
AS_OF = {"first": 0, "late": 11, "prices_moved": 15, "changed": 46}
Positions = dict[str, tuple[Decimal, Decimal]]


def _at(name: str) -> datetime:
    return T0 + timedelta(minutes=SNAPSHOTS[name][0])


def _expected(name: str) -> Positions:
    return {s: (Decimal(q), Decimal(p)) for s, (q, p) in SNAPSHOTS[name][2].items()}


async def _old_account(engine: AsyncEngine) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """An account with SNAPSHOTS in the old layout, upgraded to the newest schema: (account, ids)."""
    account = uuid.uuid4()
    snapshots = {
        name: OldSnapshot(_at(name), status, holdings) for name, (_, status, holdings) in SNAPSHOTS.items()
    }
    await upgrade_schema(engine, OLD_REVISION)
    await fill_old_layout(engine, {account: list(snapshots.values())})
    await upgrade_schema(engine)
    return account, {name: s.id for name, s in snapshots.items()}


async def _reads(
    sessions: async_sessionmaker[AsyncSession], account: uuid.UUID, ids: dict[str, uuid.UUID]
) -> dict[str, Positions]:
    """What the API answers for the account: each snapshot by id, as of each snapshot's time, now."""
    answers: dict[str, Positions] = {}
    async with sessions() as session:
        for name, snapshot_id in ids.items():
            found = await account_snapshot(session, account_id=account, snapshot_id=snapshot_id)
            assert found is not None
            answers[f"snapshot {name}"] = {h.symbol: (h.quantity, h.last_price) for h in found[1]}
        for name, minutes in AS_OF.items():
            positions = await positions_of(session, account, as_of=T0 + timedelta(minutes=minutes))
            answers[f"as of {name}"] = {p.symbol: (p.quantity, p.last_price) for p in positions}
        answers["now"] = {p.symbol: (p.quantity, p.last_price) for p in await positions_of(session, account)}
    return answers


def _as_stored() -> dict[str, Positions]:
    return {
        **{f"snapshot {name}": _expected(name) for name in SNAPSHOTS},
        **{f"as of {name}": _expected(name) for name in AS_OF},
        "now": _expected("changed"),
    }


async def _count(sessions: async_sessionmaker[AsyncSession], model: type[Any]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _holding(symbol: str, quantity: int, price: int) -> Holding:
    return Holding(
        symbol=symbol,
        exchange="NSE",
        currency="INR",
        quantity=Decimal(quantity),
        average_price=Decimal(100),
        last_price=Decimal(price),
    )


def _sync(
    account: uuid.UUID, minutes: int, *holdings: Holding, replaces: uuid.UUID | None = None
) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=minutes),
        holdings=holdings,
        replaces=replaces,
    )


async def _apply(ledger: Ledger, events: list[HoldingSnapshot]) -> int:
    """Apply `events` as the consume loop does: a batch the ledger's fence refuses (`ConcurrentWrite`:
    here, an account a move bumped since the ledger last planned it) is planned again. Returns the
    refusals."""
    refused = 0
    while True:
        try:
            await ledger.apply_batch(events)
            return refused
        except ConcurrentWrite:
            ledger.forget()
            refused += 1


async def test_history_moves_into_versions_and_reads_as_before(empty_engine: AsyncEngine) -> None:
    account, ids = await _old_account(empty_engine)
    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    # The schema upgrade moves nothing: the account is listed, and reads from its snapshots' rows.
    async with sessions() as session:
        listed = (await session.execute(select(HistoryMove.account_id, HistoryMove.through))).all()
    assert listed == [(account, _at("changed"))]
    assert await _count(sessions, PositionVersion) == 0
    assert await _reads(sessions, account, ids) == _as_stored()

    moved = await move_history(empty_engine)

    assert await _reads(sessions, account, ids) == _as_stored()
    assert (moved.accounts, moved.snapshots, moved.holding_rows) == (1, 3, 5)
    # Applied snapshots keep no rows: first opens two, the price moves add none, changed two.
    assert await _count(sessions, PositionVersion) == moved.versions == 4
    async with sessions() as session:
        kept = set(await session.scalars(select(SnapshotHolding.snapshot_id).distinct()))
    assert kept == {ids["late"]}  # the held one lists nothing
    assert await _count(sessions, HistoryMove) == 0
    assert (await move_history(empty_engine)).accounts == 0, "a second run finds nothing to move"

    # The ledger goes on from the moved history: only what changes is a new version.
    ledger = Ledger(sessions=sessions, bus=InMemoryBus())
    await _apply(ledger, [_sync(account, 60, _holding("TCS", 12, 113), _holding("HDFC", 1, 50))])
    async with sessions() as session:
        current = await positions_of(session, account)
        assert {p.symbol: (p.quantity, p.last_price) for p in current} == {
            "HDFC": (Decimal(1), Decimal(50)),
            "TCS": (Decimal(12), Decimal(113)),
        }
    assert await _count(sessions, PositionVersion) == 5


async def test_a_sync_the_ledger_applies_before_the_move_is_not_moved_and_reads_right(
    empty_engine: AsyncEngine,
) -> None:
    """The ledger writes every position of an account not moved yet, closing what its current
    snapshot held and the new one does not; the move adds the history before it."""
    account, ids = await _old_account(empty_engine)
    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    ledger = Ledger(sessions=sessions, bus=InMemoryBus())
    new = _sync(account, 60, _holding("HDFC", 1, 50))
    await _apply(ledger, [new])

    await move_history(empty_engine)

    ids["new"] = new.event_id
    expected = {**_as_stored(), "snapshot new": {"HDFC": (Decimal(1), Decimal(50))}}
    expected["now"] = expected["snapshot new"]
    assert await _reads(sessions, account, ids) == expected
    # Moved: the four of the old history; the ledger's: HDFC opened, TCS closed.
    assert await _count(sessions, PositionVersion) == 6


async def test_a_replay_of_the_current_snapshot_before_the_move_keeps_its_versions_and_closes_the_rest(
    empty_engine: AsyncEngine,
) -> None:
    """A replay correcting the current snapshot of an account not moved yet writes the versions of
    its time from the snapshot's rows alone; the move stops before them and closes there what the
    history before held (INFY): the next sync does not see it again."""
    account, ids = await _old_account(empty_engine)
    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    ledger = Ledger(sessions=sessions, bus=InMemoryBus())
    await _apply(ledger, [_sync(account, 30, _holding("TCS", 13, 112), replaces=ids["changed"])])

    moved = await move_history(empty_engine)

    assert moved.snapshots == 2, "first and prices_moved; the corrected one keeps its rows"
    corrected = {"TCS": (Decimal(13), Decimal(112))}
    expected = {**_as_stored(), "snapshot changed": corrected, "as of changed": corrected, "now": corrected}
    assert await _reads(sessions, account, ids) == expected
    assert await _apply(ledger, [_sync(account, 60, _holding("TCS", 13, 114))]) == 1, "the move bumped it"
    async with sessions() as session:
        current = await positions_of(session, account)
    assert {p.symbol: (p.quantity, p.last_price) for p in current} == {"TCS": (Decimal(13), Decimal(114))}


async def test_a_ledger_batch_planned_before_the_move_is_refused_and_planned_again(
    empty_engine: AsyncEngine,
) -> None:
    """The move bumps the accounts' `ledger_version`: a batch planned on the rows a move then
    deleted is refused by the ledger's fence (a transient error), and planned again it is right."""
    account, ids = await _old_account(empty_engine)
    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    ledger = Ledger(sessions=sessions, bus=InMemoryBus())
    new = _sync(account, 60, _holding("HDFC", 1, 50))
    write = await ledger.prepare([new])

    await move_history(empty_engine)

    with pytest.raises(ConcurrentWrite):
        await write()
    ledger.forget()  # as the consume loop does on a transient error
    await ledger.apply_batch([new])
    ids["new"] = new.event_id
    expected = {**_as_stored(), "snapshot new": {"HDFC": (Decimal(1), Decimal(50))}}
    expected["now"] = expected["snapshot new"]
    assert await _reads(sessions, account, ids) == expected
    # Moved: the four of the old history; the ledger's on the moved history: HDFC opened, TCS closed.
    assert await _count(sessions, PositionVersion) == 6
