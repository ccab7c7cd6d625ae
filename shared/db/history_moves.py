"""History stored before versions, moved into versions and prices online: a batch of accounts per
short transaction, resumable, while the services run (`portfolio-sync db upgrade`, after the schema).

What is moved is fixed by migration 0014: each account listed in `history_moves` and its applied
snapshots taken at or before `through` (its newest then) that still keep their rows. Nothing the
ledger writes afterwards is among them: its new snapshots are newer (an older one is late and keeps
its rows), and where it has written versions of the account meanwhile (a sync, a replay of the
current snapshot), only snapshots before its first version are moved, and the moved chain is closed
there for any position the ledger's versions at that time do not name.

A batch locks the accounts' `broker_accounts` rows first (the row every ledger batch updates before
writing, its fence), skipping those a ledger batch holds, so that neither waits for the other long;
then writes the versions and prices, deletes the moved rows, deletes the accounts' `history_moves`
rows and bumps their `ledger_version`, so that a ledger batch planned before the move is refused
(`ConcurrentWrite`) and planned again, all in one commit. A run stopped anywhere is
continued by the next, which finds only the accounts left; two runs at once split them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.tables import (
    BrokerAccount,
    HistoryMove,
    InstrumentPrice,
    PositionVersion,
    Snapshot,
    SnapshotHolding,
)
from shared.test_hooks import HISTORY_BEFORE_COMMIT, crash_point

ACCOUNTS_PER_BATCH = 10
_IDS_PER_STATEMENT = 1000

Key = tuple[str, str]  # (symbol, exchange)
Row = dict[str, Any]  # a snapshot_holdings row


@dataclass
class MoveProgress:
    """What a run has committed so far, and how fast."""

    accounts_total: int  # listed when the run started
    accounts: int = 0
    snapshots: int = 0
    holding_rows: int = 0  # deleted
    versions: int = 0
    prices: int = 0
    longest: float = 0.0  # seconds, the longest batch's transaction: how long it held its locks
    started: float = field(default_factory=time.monotonic)

    def add(self, batch: MoveProgress) -> None:
        self.accounts += batch.accounts
        self.snapshots += batch.snapshots
        self.holding_rows += batch.holding_rows
        self.versions += batch.versions
        self.prices += batch.prices
        self.longest = max(self.longest, batch.longest)

    def describe(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.accounts / elapsed
        left = max(self.accounts_total - self.accounts, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 else "unknown"
        return (
            f"{self.accounts}/{self.accounts_total} accounts, {self.snapshots} snapshots "
            f"({self.holding_rows} holding rows -> {self.versions} versions, {self.prices} prices) "
            f"in {elapsed:.1f} s: {rate:.1f} accounts/s, {self.holding_rows / elapsed:.0f} rows/s, "
            f"longest transaction {self.longest:.2f} s, ETA {eta}"
        )


async def accounts_to_move(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(HistoryMove)) or 0)


async def move_history(
    engine: AsyncEngine,
    *,
    accounts_per_batch: int = ACCOUNTS_PER_BATCH,
    on_batch: Callable[[MoveProgress], None] | None = None,
) -> MoveProgress:
    """Move every listed account's history, a batch per transaction; `on_batch` after each commit."""
    progress = MoveProgress(accounts_total=await accounts_to_move(engine))
    while True:
        began = time.monotonic()
        async with engine.begin() as conn:
            batch = await _move_batch(conn, accounts_per_batch)
            if batch is None:
                return progress
            crash_point(HISTORY_BEFORE_COMMIT)
        batch.longest = time.monotonic() - began
        progress.add(batch)
        if on_batch is not None:
            on_batch(progress)


async def _move_batch(conn: AsyncConnection, accounts: int) -> MoveProgress | None:
    """Move up to `accounts` listed accounts in `conn`'s transaction; None when none is listed."""
    listed = list(
        await conn.scalars(select(HistoryMove.account_id).order_by(HistoryMove.account_id).limit(accounts))
    )
    if not listed:
        return None
    brokers = await _lock_accounts(conn, listed)
    # Read under the locks: another run may have moved some meanwhile, the ledger written versions.
    listings = await conn.execute(
        select(HistoryMove.account_id, HistoryMove.through).where(_among(HistoryMove.account_id, brokers))
    )
    through: dict[uuid.UUID, datetime] = {account_id: at for account_id, at in listings}
    batch = MoveProgress(accounts_total=len(through), accounts=len(through))
    if not through:
        return batch
    firsts = await _first_versions(conn, list(through))
    rows = await conn.execute(
        select(Snapshot.account_id, Snapshot.id, Snapshot.taken_at, *SnapshotHolding.__table__.c)
        .join(SnapshotHolding, SnapshotHolding.snapshot_id == Snapshot.id, isouter=True)
        .where(_among(Snapshot.account_id, through), Snapshot.status == "applied", Snapshot.holdings_kept)
        .order_by(Snapshot.account_id, Snapshot.taken_at, Snapshot.id)
    )
    versions: list[Row] = []
    prices: list[Row] = []
    moved: list[uuid.UUID] = []
    for account_id, snapshots in _by_account(rows.mappings()):
        first = firsts.get(account_id)
        owned = [s for s in snapshots if s[1] <= through[account_id] and (first is None or s[1] < first[0])]
        open_after = _move_account(account_id, brokers[account_id], owned, versions, prices, moved)
        if first is not None:
            at, named = first
            versions += [
                _version(account_id, at, h, None) for key, h in open_after.items() if key not in named
            ]
    if versions:
        await conn.execute(insert(PositionVersion), versions)
    if prices:
        await conn.execute(insert(InstrumentPrice), prices)
    for start in range(0, len(moved), _IDS_PER_STATEMENT):
        chunk = moved[start : start + _IDS_PER_STATEMENT]
        deleted = await conn.execute(delete(SnapshotHolding).where(SnapshotHolding.snapshot_id.in_(chunk)))
        batch.holding_rows += deleted.rowcount
        await conn.execute(update(Snapshot).where(Snapshot.id.in_(chunk)).values(holdings_kept=False))
    await conn.execute(delete(HistoryMove).where(_among(HistoryMove.account_id, through)))
    # The ledger reads an account in several statements (whether its current snapshot keeps its
    # rows, then the rows): a batch it planned across this commit is refused by its fence and
    # planned again on the moved history.
    await conn.execute(
        update(BrokerAccount)
        .where(_among(BrokerAccount.id, through))
        .values(ledger_version=BrokerAccount.ledger_version + 1)
    )
    batch.snapshots, batch.versions, batch.prices = len(moved), len(versions), len(prices)
    return batch


async def _lock_accounts(conn: AsyncConnection, listed: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Lock the listed accounts' rows that no one holds ({id: broker}); if a ledger batch holds them
    all, wait for the first alone (waiting for one row while holding none cannot deadlock)."""
    accounts = select(BrokerAccount.id, BrokerAccount.broker).order_by(BrokerAccount.id)
    free = await conn.execute(
        accounts.where(_among(BrokerAccount.id, listed)).with_for_update(skip_locked=True)
    )
    brokers = dict(free.all())
    if not brokers:
        first = await conn.execute(accounts.where(BrokerAccount.id == listed[0]).with_for_update())
        brokers = dict(first.all())  # empty if it was deleted meanwhile (its listing with it)
    return brokers


async def _first_versions(
    conn: AsyncConnection, account_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[datetime, set[Key]]]:
    """Of the accounts the ledger has written versions of since the schema upgrade: the time of the
    first and the instruments versioned then."""
    v = PositionVersion
    earliest = await conn.execute(
        select(v.account_id, func.min(v.valid_from))
        .where(_among(v.account_id, account_ids))
        .group_by(v.account_id)
    )
    firsts: dict[uuid.UUID, datetime] = {account_id: at for account_id, at in earliest}
    if not firsts:
        return {}
    named: dict[uuid.UUID, set[Key]] = {a: set() for a in firsts}
    rows = await conn.execute(
        select(v.account_id, v.symbol, v.exchange).where(
            or_(*(and_(v.account_id == a, v.valid_from == at) for a, at in firsts.items()))
        )
    )
    for account_id, symbol, exchange in rows:
        named[account_id].add((symbol, exchange))
    return {a: (at, named[a]) for a, at in firsts.items()}


def _move_account(
    account_id: uuid.UUID,
    broker: str,
    snapshots: list[tuple[uuid.UUID, datetime, list[Row]]],
    versions: list[Row],
    prices: list[Row],
    moved: list[uuid.UUID],
) -> dict[Key, Row]:
    """The versions and prices of an account's applied snapshots, in time order (each against the
    one before); returns the positions the last leaves open."""
    before: dict[Key, Row] = {}
    last_at = None
    for snapshot_id, taken_at, holdings in snapshots:
        if taken_at == last_at:
            continue  # the same time as the one before: it keeps its own rows
        last_at = taken_at
        moved.append(snapshot_id)
        after = {(h["symbol"], h["exchange"]): h for h in holdings}
        for key, h in after.items():
            was = before.get(key)
            if was is None or _terms(was) != _terms(h):
                versions.append(_version(account_id, taken_at, h, h["quantity"]))
            if was is None or was["last_price"] != h["last_price"]:
                prices.append(
                    {
                        "symbol": key[0],
                        "exchange": key[1],
                        "at": taken_at,
                        "price": h["last_price"],
                        "source": broker,
                    }
                )
        versions += [
            _version(account_id, taken_at, was, None) for key, was in before.items() if key not in after
        ]
        before = after
    return before


def _by_account(
    rows: Iterable[Any],
) -> Iterator[tuple[uuid.UUID, list[tuple[uuid.UUID, datetime, list[Row]]]]]:
    account_id = None
    snapshots: list[tuple[uuid.UUID, datetime, list[Row]]] = []
    for row in rows:
        if row["account_id"] != account_id:
            if snapshots:
                yield account_id, snapshots  # type: ignore[misc]
            account_id, snapshots = row["account_id"], []
        if not snapshots or snapshots[-1][0] != row["id"]:
            snapshots.append((row["id"], row["taken_at"], []))
        if row["symbol"] is not None:
            snapshots[-1][2].append(dict(row))
    if snapshots:
        yield account_id, snapshots  # type: ignore[misc]


def _terms(h: Row) -> tuple[Any, ...]:
    """Everything of a position but its price: what a new version is written for."""
    return (h["quantity"], h["average_price"], h["isin"], h["currency"], h["asset_type"])


def _version(account_id: uuid.UUID, at: datetime, h: Row, quantity: Any) -> Row:
    return {
        "account_id": account_id,
        "symbol": h["symbol"],
        "exchange": h["exchange"],
        "valid_from": at,
        "isin": h["isin"],
        "currency": h["currency"],
        "asset_type": h["asset_type"],
        "quantity": quantity,
        "average_price": h["average_price"],
    }


def _among(column: Any, ids: Iterable[uuid.UUID]) -> Any:
    return column.in_(list(ids))
