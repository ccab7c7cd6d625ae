"""The ledger's reads and writes: a handful of set-based statements per batch, whatever its size.

On Postgres, a large batch's new rows go in with COPY in the text format (see `shared.db.copy_text`),
encoded while the previous batch is being written, in pieces sent one at a time; a small one's with
one statement for every table (`shared.db.sets.insert_columns`); on SQLite (the embedded mode) with
ordinary multi-row inserts.
Either way the batch is one transaction.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, literal, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.comparison import Hashed
from services.ledger.correction_store import rederive_corrections
from services.ledger.plan import AccountState, BatchPlan, RunState
from services.ledger.positions import Held, HeldLike, InstrumentKey
from services.ledger.versions import PRICE_COLUMNS, VERSION_COLUMNS
from shared.db.copy_text import DatetimeTexts, copy_text
from shared.db.position_versions import price_at, superseded
from shared.db.sets import among, insert_columns, update_by_id, update_by_id_if_unchanged
from shared.db.tables import (
    REPORTED_TRADE,
    Base,
    BrokerAccount,
    InstrumentPrice,
    OutboxMessage,
    PositionVersion,
    ProcessedEvent,
    Snapshot,
    SnapshotHolding,
    SyncAttempt,
    SyncRun,
    Transaction,
)
from shared.events import Event, Holding, HoldingSnapshot


class ConcurrentWrite(RuntimeError):
    """An account changed under a batch after it was planned: another ledger wrote it (a rebalance,
    or a ledger that lost its partitions without knowing), or the user set new credentials. Nothing
    of the batch is written; it is planned again from the database's state (a transient error)."""


Encoded = list[tuple[type[Base], Sequence[str], list[bytes]]]  # each table's new rows as COPY text, in pieces

# Rows per piece of a table's COPY text. The ledger's peak memory is one batch being written while the
# next is encoded: a table encoded whole held the text of every value at once (some 40,000 versions'
# nine columns, 20 MB for a moment), and sent whole it was copied twice more (into asyncpg's message,
# then into the socket's buffer). In pieces of some 700 KB each of those stays that small, and a
# piece is let go of as soon as it is sent.
COPY_PIECE_ROWS = 5000

# A batch that adds at most this many rows goes in as one statement: one round trip, where a COPY per
# table takes two each (COPY, then its data). Small batches are what a ledger that keeps up writes,
# and each of its round trips is latency; past this size COPY's cheaper encoding and parsing pay more.
INSERT_AT_MOST = 1000


def _new_rows(
    plan: BatchPlan, *, for_copy: bool = False
) -> list[tuple[type[Base], Sequence[str], list[Sequence[Any]]]]:
    """The tables a batch only adds rows to, their columns and the rows' values column by column, in
    the order they are written. `for_copy`: the holdings' snapshot ids as text, each made once."""
    return [
        (Snapshot, BatchPlan.SNAPSHOT_COLUMNS, _columns(plan.snapshots)),
        (SnapshotHolding, BatchPlan.HOLDING_COLUMNS, _holding_columns(plan.holdings, for_copy)),
        (PositionVersion, VERSION_COLUMNS, _columns(plan.versions)),
        (InstrumentPrice, PRICE_COLUMNS, _columns(plan.prices)),
        (Transaction, BatchPlan.TRANSACTION_COLUMNS, _columns(plan.derived)),
        (OutboxMessage, BatchPlan.OUTBOX_COLUMNS, _columns(plan.outbox)),
        (ProcessedEvent, BatchPlan.PROCESSED_COLUMNS, _columns(plan.processed)),
        # Runs nobody recorded (an operator's tool).
        (SyncRun, BatchPlan.RUN_COLUMNS, _columns(plan.new_runs)),
        (SyncAttempt, BatchPlan.ATTEMPT_COLUMNS, _columns(plan.attempts)),  # after the runs they name
    ]


def _columns(rows: list[tuple[Any, ...]]) -> list[Sequence[Any]]:
    return list(zip(*rows, strict=True))


def _holding_columns(
    snapshots: list[tuple[uuid.UUID, tuple[Holding, ...]]], text_ids: bool
) -> list[Sequence[Any]]:
    holdings = list(chain.from_iterable(h for _, h in snapshots))
    if not holdings:
        return []
    snapshot_ids = list(chain.from_iterable(repeat(i.hex if text_ids else i, len(h)) for i, h in snapshots))
    return [snapshot_ids, *(list(map(attrgetter(name), holdings)) for name in BatchPlan.HOLDING_COLUMNS[1:])]


async def _taken(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """The pieces in order, each removed from the list as it is handed out."""
    pieces.reverse()
    while pieces:
        yield pieces.pop()


def _new_snapshot(event: Event) -> bool:
    return isinstance(event, HoldingSnapshot) and event.replaces is None


class PositionsCache:
    """Each account's positions as of a snapshot, with their content-hash lines, for the most
    recently used `size` accounts.

    Valid only while the account still points at that snapshot at the ledger version the cache saw
    (the caller checks): a replay rewrites a snapshot's holdings without moving the pointer, so a
    cache that another ledger made stale is told by the version, and simply not used. Bounded by
    accounts, not by snapshots seen.
    """

    def __init__(self, size: int = 5_000) -> None:
        self._entries: OrderedDict[
            uuid.UUID, tuple[uuid.UUID, int, dict[InstrumentKey, HeldLike], Hashed | None]
        ] = OrderedDict()
        self._size = size

    def get(
        self, account_id: uuid.UUID, snapshot_id: uuid.UUID, version: int
    ) -> tuple[dict[InstrumentKey, HeldLike], Hashed | None] | None:
        entry = self._entries.get(account_id)
        if entry is None or entry[:2] != (snapshot_id, version):
            return None
        self._entries.move_to_end(account_id)
        return entry[2], entry[3]

    def remember(
        self,
        account_id: uuid.UUID,
        snapshot_id: uuid.UUID,
        version: int,
        positions: dict[InstrumentKey, HeldLike],
        hashed: Hashed | None,
    ) -> None:
        self._entries[account_id] = (snapshot_id, version, positions, hashed)
        self._entries.move_to_end(account_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class LedgerStore:
    def __init__(self, session: AsyncSession, *, consumer: str) -> None:
        self._session = session
        self._consumer = consumer
        self._postgres = session.get_bind().dialect.name == "postgresql"

    async def new_events(self, events: Sequence[Event]) -> list[Event]:
        """The events not applied before (redelivery), each once, in their order."""
        # A snapshot is known by its row; anything else (a replay's correction included) by its
        # processed event.
        snapshot_ids = [e.event_id for e in events if _new_snapshot(e)]
        other_ids = [e.event_id for e in events if not _new_snapshot(e)]
        seen: set[uuid.UUID] = set()
        if snapshot_ids:
            seen.update(
                await self._session.scalars(select(Snapshot.id).where(self._among(Snapshot.id, snapshot_ids)))
            )
        if other_ids:
            seen.update(
                await self._session.scalars(
                    select(ProcessedEvent.event_id).where(
                        ProcessedEvent.consumer == self._consumer,
                        self._among(ProcessedEvent.event_id, other_ids),
                    )
                )
            )
        fresh = []
        for event in events:
            if event.event_id not in seen:
                seen.add(event.event_id)
                fresh.append(event)
        return fresh

    async def accounts(self, ids: set[uuid.UUID], cache: PositionsCache) -> dict[uuid.UUID, AccountState]:
        """The accounts' state, with the positions of their current and held snapshots; positions come
        from `cache` when it holds the very snapshot the database names, else from the database."""
        if not ids:
            return {}
        a = BrokerAccount
        rows = await self._session.execute(
            select(
                a.id,
                a.portfolio_id,
                a.current_snapshot_id,
                a.positions_as_of,
                a.held_snapshot_id,
                a.held_reason,
                a.last_attempt_at,
                a.last_success_at,
                a.consecutive_failures,
                a.needs_reauth,
                a.last_error,
                a.ledger_version,
                a.credentials_changed_at,
                Snapshot.holdings_kept,
            )
            .outerjoin(Snapshot, Snapshot.id == a.current_snapshot_id)
            .where(self._among(a.id, ids))
        )
        states = {
            row.id: AccountState(
                id=row.id,
                portfolio_id=row.portfolio_id,
                current_snapshot_id=row.current_snapshot_id,
                positions_as_of=row.positions_as_of,
                positions={},
                held_snapshot_id=row.held_snapshot_id,
                held_reason=row.held_reason,
                last_attempt_at=row.last_attempt_at,
                last_success_at=row.last_success_at,
                consecutive_failures=row.consecutive_failures,
                needs_reauth=row.needs_reauth,
                last_error=row.last_error,
                ledger_version=row.ledger_version,
                credentials_changed_at=row.credentials_changed_at,
                versions_behind=bool(row.holdings_kept),
            )
            for row in rows
        }
        missing = []
        kept: dict[uuid.UUID, AccountState] = {}  # current snapshots read from their own holdings
        for state in states.values():
            if state.current_snapshot_id is not None:
                cached = cache.get(state.id, state.current_snapshot_id, state.ledger_version)
                if cached is not None:
                    state.positions, state.hashed = cached  # never changed in place: shared
                elif state.versions_behind:
                    kept[state.current_snapshot_id] = state
                else:
                    missing.append(state.id)
        versioned: dict[uuid.UUID, dict[InstrumentKey, HeldLike]] = {}
        if missing or kept:
            # A kept current snapshot's account too, in the same statement: for its strays.
            versioned = await self.current_positions([*missing, *(s.id for s in kept.values())])
            for account_id in missing:
                states[account_id].positions = versioned[account_id]
        held = {s.held_snapshot_id: s for s in states.values() if s.held_snapshot_id is not None}
        if held or kept:
            loaded = await self.kept_holdings([*held, *kept])
            for snapshot_id, state in kept.items():
                state.positions = loaded[snapshot_id]
                state.strays = {k: p for k, p in versioned[state.id].items() if k not in state.positions}
            for snapshot_id, state in held.items():
                state.held_positions = loaded[snapshot_id]
            taken = await self._session.execute(
                select(Snapshot.id, Snapshot.taken_at).where(self._among(Snapshot.id, list(held)))
            )
            for snapshot_id, taken_at in taken:
                held[snapshot_id].held_taken_at = taken_at
        return states

    async def current_positions(
        self, account_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, dict[InstrumentKey, HeldLike]]:
        """The accounts' positions: their newest version of each instrument still open, priced as of
        the account's positions' time."""
        v = PositionVersion
        price = price_at(BrokerAccount.positions_as_of)
        rows = await self._session.execute(
            select(
                v.account_id,
                v.symbol,
                v.exchange,
                v.quantity,
                v.average_price,
                price,
                v.currency,
                v.isin,
                v.asset_type,
            )
            .join(BrokerAccount, BrokerAccount.id == v.account_id)
            .where(self._among(v.account_id, account_ids), v.quantity.is_not(None), ~superseded())
        )
        positions: dict[uuid.UUID, dict[InstrumentKey, HeldLike]] = {i: {} for i in account_ids}
        for account_id, symbol, exchange, *held in rows:
            positions[account_id][(symbol, exchange)] = Held._make(held)
        return positions

    async def kept_holdings(
        self, snapshot_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, dict[InstrumentKey, HeldLike]]:
        """The holdings of snapshots that keep their own (`Snapshot.holdings_kept`)."""
        h = SnapshotHolding
        rows = await self._session.execute(
            select(
                h.snapshot_id,
                h.symbol,
                h.exchange,
                h.quantity,
                h.average_price,
                h.last_price,
                h.currency,
                h.isin,
                h.asset_type,
            ).where(self._among(h.snapshot_id, snapshot_ids))
        )
        positions: dict[uuid.UUID, dict[InstrumentKey, HeldLike]] = {i: {} for i in snapshot_ids}
        for snapshot_id, symbol, exchange, *held in rows:
            positions[snapshot_id][(symbol, exchange)] = Held._make(held)
        return positions

    async def replaceable(self, targets: dict[uuid.UUID, uuid.UUID]) -> frozenset[uuid.UUID]:
        """Of the snapshots replays name (snapshot id -> the replay's account), those stored for
        that very account."""
        if not targets:
            return frozenset()
        rows = await self._session.execute(
            select(Snapshot.id, Snapshot.account_id).where(self._among(Snapshot.id, list(targets)))
        )
        return frozenset(
            snapshot_id for snapshot_id, account_id in rows if targets[snapshot_id] == account_id
        )

    async def runs(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, RunState]:
        if not ids:
            return {}
        rows = await self._session.execute(
            select(SyncRun.id, SyncRun.account_id, SyncRun.status, SyncRun.attempts).where(
                self._among(SyncRun.id, ids)
            )
        )
        return {
            run_id: RunState(id=run_id, account_id=account_id, exists=True, status=status, attempts=attempts)
            for run_id, account_id, status, attempts in rows
        }

    def encode(self, plan: BatchPlan) -> Encoded:
        """The plan's new rows as COPY text on Postgres, unless they are few (nothing to encode then,
        nor on SQLite). The ledger encodes a batch while the previous one is being written, so writing
        costs Python nothing."""
        if not self._postgres:
            return []
        tables = [
            (model, names, columns) for model, names, columns in _new_rows(plan, for_copy=True) if columns
        ]
        if sum(len(columns[0]) for _, _, columns in tables) <= INSERT_AT_MOST:
            return []  # a small batch: `write` inserts it in one statement
        datetimes: DatetimeTexts = {}  # the batch's times recur across its tables
        return [
            (
                model,
                names,
                [
                    copy_text([column[start : start + COPY_PIECE_ROWS] for column in columns], datetimes)
                    for start in range(0, len(columns[0]), COPY_PIECE_ROWS)
                ],
            )
            for model, names, columns in tables
        ]

    async def write(self, plan: BatchPlan, encoded: Encoded) -> None:
        """Write the plan; its new rows are taken from `encoded` when `encode` made any. The
        accounts go first: that statement also opens the transaction the COPYs join, and it is
        fenced: should any account have moved since the plan read it, nothing is written and
        `ConcurrentWrite` is raised. Every event of a batch touches its account, so the fence covers
        the whole batch (its snapshots, runs and trades), not only the accounts' rows."""
        updated = await update_by_id_if_unchanged(
            self._session,
            BrokerAccount,
            plan.accounts,
            unchanged=BatchPlan.ACCOUNT_FENCE,
            version="ledger_version",
        )
        if updated != len(plan.accounts):
            raise ConcurrentWrite(
                f"{len(plan.accounts) - updated} of the batch's {len(plan.accounts)} accounts changed "
                "(another ledger, new credentials) or vanished since it was planned"
            )
        if encoded:
            for model, names, pieces in encoded:
                await self._copy(model, names, pieces)
        elif self._postgres:
            await insert_columns(self._session, _new_rows(plan))
        else:
            for model, names, columns in _new_rows(plan):
                if columns:
                    rows = zip(*columns, strict=True)
                    await self._session.execute(
                        insert(model), [dict(zip(names, r, strict=True)) for r in rows]
                    )
        if plan.reported:
            await self._insert_new_trades(plan.reported)
        await update_by_id(
            self._session, Snapshot, [{"id": i, "status": s} for i, s in plan.status_changes.items()]
        )
        await update_by_id(
            self._session,
            Snapshot,
            [{"id": i, "announcement_id": a} for i, a in plan.announcements.items()],
        )
        await update_by_id(self._session, SyncRun, plan.changed_runs)
        if plan.replaced:
            # Before the holdings are replaced: the moves the corrections change read what they were.
            await rederive_corrections(self._session, plan)
            await self._replace_holdings(plan.replaced)
        if plan.rewritten_versions:
            await self._rewrite_versions(plan.rewritten_versions)

    async def _replace_holdings(self, replaced: dict[uuid.UUID, tuple[Holding, ...]]) -> None:
        """A replay's correction: the snapshots' holdings rows deleted and written anew (rare and
        small: ordinary statements, no COPY)."""
        await self._session.execute(
            delete(SnapshotHolding).where(self._among(SnapshotHolding.snapshot_id, list(replaced)))
        )
        names = BatchPlan.HOLDING_COLUMNS
        rows = [
            dict(zip(names, (snapshot_id, *(getattr(h, n) for n in names[1:])), strict=True))
            for snapshot_id, holdings in replaced.items()
            for h in holdings
        ]
        if rows:
            await self._session.execute(insert(SnapshotHolding), rows)
        await update_by_id(
            self._session,
            Snapshot,
            [
                {"id": i, "holdings_count": len(holdings), "holdings_kept": True}
                for i, holdings in replaced.items()
            ],
        )

    async def _rewrite_versions(self, rewritten: dict[tuple[uuid.UUID, Any], list[tuple[Any, ...]]]) -> None:
        """A replay's correction of current snapshots: the versions of their time written anew, so
        that the versions say what the account's positions now are (rare and small). A close of that
        time the new versions do not name stays: the position closed then, and the correction does
        not list it either (it would name it)."""
        v = PositionVersion
        key = tuple_(v.symbol, v.exchange)
        await self._session.execute(
            delete(v).where(
                or_(
                    *(
                        and_(
                            v.account_id == account,
                            v.valid_from == at,
                            or_(v.quantity.is_not(None), key.in_([row[1:3] for row in rows])),
                        )
                        for (account, at), rows in rewritten.items()
                    )
                )
            )
        )
        rows = [dict(zip(VERSION_COLUMNS, row, strict=True)) for rows in rewritten.values() for row in rows]
        if rows:
            await self._session.execute(insert(v), rows)

    def _among(self, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
        return among(column, values, postgres=self._postgres)

    async def _copy(self, model: type[Base], columns: Sequence[str], pieces: list[bytes]) -> None:
        """COPY rows `encode` turned into text, a piece at a time (asyncpg sends the next once the
        socket has taken the last), emptying `pieces`: each is let go of once sent."""
        driver = await self._driver_in_transaction()
        await driver.copy_to_table(
            model.__tablename__, source=_taken(pieces), columns=list(columns), format="text"
        )

    async def _driver_in_transaction(self) -> Any:
        """The asyncpg connection under the session, inside the session's transaction. SQLAlchemy's
        asyncpg adapter sends BEGIN with its first statement; a COPY sent around the adapter before
        any statement would run outside the transaction and commit on its own."""
        connection = await self._session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        if not driver.is_in_transaction():  # type: ignore[union-attr]
            await self._session.execute(select(literal(1)))
        return driver

    async def _insert_new_trades(self, rows: list[tuple[Any, ...]]) -> None:
        """Reported trades, each stored once however often the broker reports it."""
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        statement = dialect_insert(Transaction).on_conflict_do_nothing(
            index_elements=["account_id", "trade_id"], index_where=REPORTED_TRADE
        )
        await self._session.execute(
            statement, [dict(zip(BatchPlan.TRANSACTION_COLUMNS, row, strict=True)) for row in rows]
        )
