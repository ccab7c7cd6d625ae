"""Decide everything one batch writes, in memory, before a single row is written.

`plan_batch` takes the batch's accounts as loaded from the database and the batch's new events, in
order, and returns the rows to insert and update. It keeps each account's state up to date as it
goes, so several snapshots of one account in one batch chain correctly. Nothing here does I/O.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.ledger import announcements, current_holdings
from services.ledger.comparison import Comparison, Hashed, compare
from services.ledger.positions import (
    ZERO,
    DerivedTrade,
    HeldLike,
    InstrumentKey,
    PriceSource,
    TradeKind,
    derive_trades,
    positions_of,
    quantity_changes,
)
from services.ledger.versions import (
    PriceMemo,
    Prices,
    content_digest,
    content_hash,
    note_prices,
    version_rows,
)
from shared.db.tables import SnapshotStatus
from shared.events import (
    Event,
    FailureKind,
    Holding,
    HoldingSnapshot,
    SnapshotAccepted,
    SnapshotDismissed,
    SyncFailed,
    TradeSide,
    utc_now,
)
from shared.snapshot_review import SnapshotSource, confirms_held, suspicion
from shared.statements import STATEMENT_BROKER

FINISHED_RUN = frozenset({"succeeded", "failed"})


@dataclass
class AccountState:
    """An account as the batch sees it: loaded from the database, then updated event by event."""

    id: uuid.UUID
    portfolio_id: uuid.UUID
    current_snapshot_id: uuid.UUID | None
    positions_as_of: datetime | None
    positions: dict[InstrumentKey, Any]
    held_snapshot_id: uuid.UUID | None = None
    held_taken_at: datetime | None = None
    held_positions: dict[InstrumentKey, Any] | None = None
    held_reason: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    needs_reauth: bool = False
    last_error: str | None = None
    # The fence (see `ACCOUNT_FENCE`): the ledger's version the batch builds on, and the API's
    # credentials time. Auth state older than the credentials is not the account's any more.
    ledger_version: int = 0
    credentials_changed_at: datetime | None = None
    # The current snapshot keeps its own holdings and the versions may not say them (a snapshot
    # stored before versions): the next applied snapshot writes a version of every position.
    versions_behind: bool = False
    # Positions the versions hold open that such a current snapshot does not list (versions a replay
    # left before it kept the closes of its time): the next versions written close them.
    strays: dict[InstrumentKey, Any] = field(default_factory=dict)
    # The content-hash text of `positions` (used only if it is of these, not of earlier ones). A
    # positions dict is never changed in place, only replaced, so what is kept of one stays true.
    hashed: Hashed | None = None
    touched: bool = False

    def versioned(self) -> dict[InstrumentKey, Any]:
        """The positions the versions hold open: what the next versions written start from."""
        return {**self.strays, **self.positions} if self.strays else self.positions

    def account_update(self) -> dict[str, Any]:
        """The ledger's columns of the account, and the fence's values it was planned on."""
        return {
            "id": self.id,
            "ledger_version": self.ledger_version,
            "credentials_changed_at": self.credentials_changed_at,
            "current_snapshot_id": self.current_snapshot_id,
            "positions_as_of": self.positions_as_of,
            "held_snapshot_id": self.held_snapshot_id,
            "held_reason": self.held_reason,
            "last_attempt_at": self.last_attempt_at,
            "last_success_at": self.last_success_at,
            "consecutive_failures": self.consecutive_failures,
            "needs_reauth": self.needs_reauth,
            "last_error": self.last_error,
        }

    def outdated_by(self, failure: SyncFailed) -> bool:
        """The failure happened before the last success or the last credentials change: it says
        nothing about the account now (it still ends its own run)."""
        return any(
            at is not None and failure.occurred_at <= at
            for at in (self.last_success_at, self.credentials_changed_at)
        )


@dataclass
class RunState:
    """A sync run as the batch sees it; `exists` says whether to insert or update it."""

    id: uuid.UUID
    account_id: uuid.UUID
    exists: bool
    trigger: str = "external"
    requested_at: datetime | None = None
    status: str = "requested"
    attempts: int = 1
    finished_at: datetime | None = None
    snapshot_id: uuid.UUID | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None
    next_attempt_at: datetime | None = None
    touched: bool = False

    def row(self) -> tuple[Any, ...]:
        """The whole row (`BatchPlan.RUN_COLUMNS`), for a run nobody recorded before."""
        return (
            self.id,
            self.account_id,
            self.trigger,
            self.requested_at,
            self.status,
            self.attempts,
            self.finished_at,
            self.snapshot_id,
            self.failure_kind,
            self.failure_reason,
            self.next_attempt_at,
        )

    def outcome(self) -> dict[str, Any]:
        """What the ledger learns of a run: all it updates on a run its requester recorded."""
        return {
            "id": self.id,
            "status": self.status,
            "attempts": self.attempts,
            "finished_at": self.finished_at,
            "snapshot_id": self.snapshot_id,
            "failure_kind": self.failure_kind,
            "failure_reason": self.failure_reason,
            "next_attempt_at": self.next_attempt_at,
        }


@dataclass
class BatchPlan:
    """Rows to write, as tuples in the column order below, except holdings: those are kept as each
    snapshot's own, and the columns named after the snapshot's id are the Holding's attributes."""

    SNAPSHOT_COLUMNS = (
        "id",
        "account_id",
        "request_id",
        "taken_at",
        "received_at",
        "holdings_count",
        "status",
        "announcement_id",
        "holdings_kept",
        "content_hash",
    )
    HOLDING_COLUMNS = (
        "snapshot_id",
        "symbol",
        "exchange",
        "isin",
        "currency",
        "asset_type",
        "quantity",
        "average_price",
        "last_price",
    )
    TRANSACTION_COLUMNS = (  # no id: the database gives each one
        "account_id",
        "symbol",
        "exchange",
        "kind",
        "quantity",
        "price",
        "price_source",
        "currency",
        "occurred_at",
        "origin",
        "snapshot_id",
        "trade_id",
    )
    RUN_COLUMNS = (
        "id",
        "account_id",
        "trigger",
        "requested_at",
        "status",
        "attempts",
        "finished_at",
        "snapshot_id",
        "failure_kind",
        "failure_reason",
        "next_attempt_at",
    )
    OUTBOX_COLUMNS = ("event_id", "topic", "message_key", "payload", "created_at", "snapshot_id")
    ATTEMPT_COLUMNS = (
        "event_id",
        "run_id",
        "attempt",
        "fetcher_id",
        "started_at",
        "duration_ms",
        "reported_at",
        "outcome",
        "failure_kind",
        "failure_reason",
        "holdings_count",
    )
    PROCESSED_COLUMNS = ("event_id", "consumer", "processed_at")
    # An account's update applies only while these still hold what the batch was planned on.
    ACCOUNT_FENCE = ("ledger_version", "credentials_changed_at")

    events: int = 0  # how many events the plan applies
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    # Per snapshot that keeps its holdings (late, held); an applied one adds versions and prices.
    holdings: list[tuple[uuid.UUID, tuple[Holding, ...]]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)  # `VERSION_COLUMNS`
    prices: list[tuple[Any, ...]] = field(default_factory=list)  # `PRICE_COLUMNS`
    pending_prices: Prices = field(default_factory=dict)
    derived: list[tuple[Any, ...]] = field(default_factory=list)
    reported: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    processed: list[tuple[Any, ...]] = field(default_factory=list)
    status_changes: dict[uuid.UUID, str] = field(default_factory=dict)  # earlier snapshots' new status
    accounts: list[dict[str, Any]] = field(default_factory=list)  # ordered by id: one lock order
    new_runs: list[tuple[Any, ...]] = field(default_factory=list)
    changed_runs: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)  # every snapshot's and failure's
    # Stored snapshots whose holdings a replay replaces (`HoldingSnapshot.replaces`), with the new ones.
    replaced: dict[uuid.UUID, tuple[Holding, ...]] = field(default_factory=dict)
    # A replay correcting an account's current snapshot rewrites the versions of its time:
    # (account, taken_at) -> every version of that time.
    rewritten_versions: dict[tuple[uuid.UUID, datetime], list[tuple[Any, ...]]] = field(default_factory=dict)
    # Snapshots announced by this batch, to their HoldingsChanged: new ones take it in their row (and
    # leave this), earlier ones (accepted after being held) are updated.
    announcements: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)  # for the batch's log line


class UnknownAccount(LookupError):
    """An event for an account the database does not have (deleted, or never created)."""


def plan_batch(
    events: Sequence[Event],
    accounts: dict[uuid.UUID, AccountState],
    runs: dict[uuid.UUID, RunState],
    *,
    consumer: str,
    replaceable: frozenset[uuid.UUID] = frozenset(),
    prices: PriceMemo | None = None,
) -> BatchPlan:
    """The rows that apply `events` (new ones only, in order) to `accounts` and `runs`.
    `replaceable`: the stored snapshots the batch's replays name that exist, each of its account.
    `prices`: the instruments' last written prices (none: every price is written)."""
    plan = BatchPlan(events=len(events))
    memo = prices or PriceMemo()
    now = utc_now()
    for event in events:
        account = accounts.get(event.account_id)
        if account is None:
            raise UnknownAccount(f"no broker account {event.account_id}")
        account.touched = True
        if isinstance(event, HoldingSnapshot) and event.replaces is not None:
            plan.processed.append((event.event_id, consumer, now))
            _replacement(plan, account, event, replaceable, now)
        elif isinstance(event, HoldingSnapshot):
            _snapshot(plan, account, runs, event, now, memo)
        else:
            plan.processed.append((event.event_id, consumer, now))
            if isinstance(event, SyncFailed):
                _failure(plan, account, runs, event)
            elif isinstance(event, SnapshotAccepted):
                _accepted(plan, account, event, now, memo)
                plan.outcomes["accepted"] += 1
            elif isinstance(event, SnapshotDismissed):
                _dismissed(plan, account, event)
    plan.outcomes.update(status for status in plan.status_changes.values())
    plan.accounts = [a.account_update() for a in sorted(accounts.values(), key=_by_id) if a.touched]
    plan.new_runs = [r.row() for r in runs.values() if r.touched and not r.exists]
    plan.changed_runs = [r.outcome() for r in runs.values() if r.touched and r.exists]
    return plan


def _by_id(account: AccountState) -> uuid.UUID:
    return account.id


def _snapshot(
    plan: BatchPlan,
    account: AccountState,
    runs: dict[uuid.UUID, RunState],
    snapshot: HoldingSnapshot,
    now: datetime,
    memo: PriceMemo,
) -> None:
    for trade in snapshot.trades:
        signed = trade.quantity if trade.side is TradeSide.BUY else -trade.quantity
        plan.reported.append(
            (
                account.id,
                trade.symbol,
                trade.exchange,
                trade.side.value,
                abs(signed),
                trade.price,
                PriceSource.REPORTED.value,
                trade.currency,
                trade.executed_at,
                "reported",
                snapshot.event_id,
                trade.trade_id,
            )
        )
    _record_attempt(
        runs,
        snapshot.request_id,
        account.id,
        snapshot.occurred_at,
        attempt=snapshot.attempt,
        status="succeeded",
        snapshot_id=snapshot.event_id,
    )
    if account.last_success_at is None or snapshot.taken_at > account.last_success_at:
        account.last_attempt_at = account.last_success_at = snapshot.taken_at
        account.consecutive_failures = 0
        account.last_error = None

    status, digest = _place(plan, account, snapshot, now, memo)
    plan.outcomes[status] += 1
    kept = status != SnapshotStatus.APPLIED
    if kept:
        plan.holdings.append((snapshot.event_id, snapshot.holdings))
    plan.snapshots.append(
        (
            snapshot.event_id,
            account.id,
            snapshot.request_id,
            snapshot.taken_at,
            now,
            len(snapshot.holdings),
            status,
            plan.announcements.pop(snapshot.event_id, None),
            kept,
            digest,
        )
    )
    plan.attempts.append(
        (
            snapshot.event_id,
            snapshot.request_id,
            snapshot.attempt,
            snapshot.fetcher_id,
            snapshot.started_at,
            snapshot.duration_ms,
            snapshot.occurred_at,
            "snapshot",
            None,
            None,
            len(snapshot.holdings),
        )
    )


def _replacement(
    plan: BatchPlan,
    account: AccountState,
    replay: HoldingSnapshot,
    replaceable: frozenset[uuid.UUID],
    now: datetime,
) -> None:
    """A replay's corrected holdings for a stored snapshot: they replace the snapshot's, whatever its
    status, and become the current (or held) positions if the snapshot is the current (or held) one.
    The snapshot keeps its time and status, its run and attempts stay as they were. The transactions
    derived from it and from the next applied snapshot, and their announcements, are corrected when
    the batch is written (`services.ledger.correction_store`): they read snapshots the batch being
    written may still be adding."""
    target = replay.replaces
    if target is None or target not in replaceable:
        plan.outcomes["replacing_unknown"] += 1  # never stored, pruned, or another account's
        return
    plan.replaced[target] = replay.holdings
    incoming = positions_of(replay.holdings)
    if account.current_snapshot_id == target and account.positions_as_of is not None:
        at = account.positions_as_of
        plan.rewritten_versions[(account.id, at)] = version_rows(
            account.id, at, account.versioned(), incoming, every=True
        )
        account.strays = {}
        account.positions = incoming
        _current(plan, account, target, now, account.hashed)  # corrected: holdings.current says so
    if account.held_snapshot_id == target:
        account.held_positions = incoming
    plan.outcomes["replaced"] += 1


def _place(
    plan: BatchPlan, account: AccountState, snapshot: HoldingSnapshot, now: datetime, memo: PriceMemo
) -> tuple[str, bytes]:
    """Apply, hold or file the snapshot; return its status and content hash."""
    if account.positions_as_of is not None and snapshot.taken_at <= account.positions_as_of:
        return SnapshotStatus.LATE, content_hash(snapshot.holdings)
    incoming = positions_of(snapshot.holdings)
    compared = _compare(plan, account, incoming, snapshot.taken_at, snapshot.broker, memo)
    # An instrument listed twice is in the hash twice, but once in the positions.
    listed_once = len(incoming) == len(snapshot.holdings)
    digest = content_digest(compared.hashed.text) if listed_once else content_hash(snapshot.holdings)
    reason = None
    if not compared.same_instruments:
        source = SnapshotSource.STATEMENT if snapshot.broker == STATEMENT_BROKER else SnapshotSource.BROKER
        reason = suspicion(account.positions.keys(), incoming.keys(), source=source)
    if account.held_snapshot_id is not None:
        if reason is not None and confirms_held(incoming.keys(), (account.held_positions or {}).keys()):
            # The next sync says the same: the held snapshot was real after all.
            plan.status_changes[account.held_snapshot_id] = SnapshotStatus.APPLIED
            reason = None
        else:
            plan.status_changes[account.held_snapshot_id] = SnapshotStatus.DISMISSED
        _release_hold(account)
    if reason is not None:
        account.held_snapshot_id = snapshot.event_id
        account.held_taken_at = snapshot.taken_at
        account.held_positions = incoming
        account.held_reason = reason
        return SnapshotStatus.HELD, digest
    net = _net_reported(snapshot, account.positions_as_of)
    _apply(plan, account, snapshot.event_id, snapshot.taken_at, incoming, now, compared, reported=net)
    return SnapshotStatus.APPLIED, digest


def _compare(
    plan: BatchPlan,
    account: AccountState,
    incoming: dict[InstrumentKey, HeldLike],
    taken_at: datetime,
    source: str,
    memo: PriceMemo,
) -> Comparison:
    return compare(
        account.id,
        account.positions,
        account.hashed,
        incoming,
        at=taken_at,
        source=source,
        memo=memo,
        pending=plan.pending_prices,
    )


def _apply(
    plan: BatchPlan,
    account: AccountState,
    snapshot_id: uuid.UUID,
    taken_at: datetime,
    incoming: dict[InstrumentKey, HeldLike],
    now: datetime,
    compared: Comparison,
    *,
    reported: dict[InstrumentKey, Decimal] | None = None,
) -> None:
    """Make `incoming` (`compared` with the account's positions) the account's positions."""
    keys = compared.moved
    was = account.hashed
    for trade in derive_trades(account.positions, incoming, reported=reported, keys=keys):
        plan.derived.append(_derived_row(account.id, snapshot_id, taken_at, trade))
    if account.versions_behind or account.strays:
        plan.versions += version_rows(
            account.id, taken_at, account.versioned(), incoming, every=account.versions_behind
        )
    else:
        plan.versions += compared.versions
    plan.prices += compared.prices
    note_prices(plan.pending_prices, compared.prices)
    account.versions_behind = False
    account.strays = {}
    account.hashed = compared.hashed
    changes = quantity_changes(account.positions, incoming, keys)
    account.current_snapshot_id = snapshot_id
    account.positions = incoming
    account.positions_as_of = taken_at
    if changes:
        row = announcements.outbox_row(
            account_id=account.id,
            portfolio_id=account.portfolio_id,
            snapshot_id=snapshot_id,
            taken_at=taken_at,
            changes=changes,
            now=now,
        )
        plan.outbox.append(row)
        plan.announcements[snapshot_id] = row[0]
        _current(plan, account, snapshot_id, now, was, keep=compared.reused > 0)


def _current(
    plan: BatchPlan,
    account: AccountState,
    snapshot_id: uuid.UUID,
    now: datetime,
    before: Hashed | None,
    *,
    keep: bool = False,
) -> None:
    """The account's complete current positions for `holdings.current`, in the outbox after what
    changed them. `before`: the positions before, with the text of their own row if it was kept.
    `keep` the text for the next row: only where some of the positions are the objects held before
    (some 2.5 KB an account of 20 in the positions cache), so that an account whose prices move
    every sync (a new object for every position) keeps none it could not use."""
    if account.positions_as_of is None:
        return  # no snapshot applied: nothing current to say
    listed = current_holdings.listed(account.positions, before)
    plan.outbox.append(
        current_holdings.outbox_row(
            account_id=account.id,
            portfolio_id=account.portfolio_id,
            snapshot_id=snapshot_id,
            as_of=account.positions_as_of,
            positions=account.positions,
            now=now,
            listed=listed,
        )
    )
    hashed = account.hashed
    if keep and hashed is not None and hashed.positions is account.positions:
        account.hashed = Hashed(hashed.positions, hashed.text, listed)


def _derived_row(
    account_id: uuid.UUID, snapshot_id: uuid.UUID, taken_at: datetime, trade: DerivedTrade
) -> tuple[Any, ...]:
    return (
        account_id,
        trade.key[0],
        trade.key[1],
        trade.kind.value,
        trade.quantity,
        trade.price,
        trade.price_source.value if trade.price_source else None,
        trade.currency,
        taken_at,
        "derived",
        snapshot_id,
        None,
    )


def _net_reported(snapshot: HoldingSnapshot, since: datetime | None) -> dict[InstrumentKey, Decimal]:
    """Signed quantity of the snapshot's reported trades made since the previous applied snapshot."""
    net: defaultdict[InstrumentKey, Decimal] = defaultdict(lambda: ZERO)
    for trade in snapshot.trades:
        if (since is None or trade.executed_at > since) and trade.executed_at <= snapshot.taken_at:
            net[(trade.symbol, trade.exchange)] += (
                trade.quantity if trade.side is TradeSide.BUY else -trade.quantity
            )
    return dict(net)


def _release_hold(account: AccountState) -> None:
    account.held_snapshot_id = None
    account.held_taken_at = None
    account.held_positions = None
    account.held_reason = None


def _accepted(
    plan: BatchPlan, account: AccountState, accepted: SnapshotAccepted, now: datetime, memo: PriceMemo
) -> None:
    if account.held_snapshot_id != accepted.snapshot_id or account.held_taken_at is None:
        return  # already confirmed or dismissed by a later sync: nothing left to accept
    snapshot_id, taken_at = accepted.snapshot_id, account.held_taken_at
    incoming = account.held_positions or {}
    _release_hold(account)
    plan.status_changes[snapshot_id] = SnapshotStatus.APPLIED
    if account.positions_as_of is None or taken_at > account.positions_as_of:
        compared = _compare(plan, account, incoming, taken_at, "accepted", memo)
        _apply(plan, account, snapshot_id, taken_at, incoming, now, compared)


def _dismissed(plan: BatchPlan, account: AccountState, dismissed: SnapshotDismissed) -> None:
    if account.held_snapshot_id != dismissed.snapshot_id:
        return  # already confirmed, dismissed or accepted: nothing left to dismiss
    _release_hold(account)
    plan.status_changes[dismissed.snapshot_id] = SnapshotStatus.DISMISSED


def _failure(
    plan: BatchPlan, account: AccountState, runs: dict[uuid.UUID, RunState], failure: SyncFailed
) -> None:
    outcome = "failed" if failure.final else "retrying"
    plan.outcomes[outcome] += 1
    plan.attempts.append(
        (
            failure.event_id,
            failure.request_id,
            failure.attempt,
            failure.fetcher_id,
            failure.started_at,
            failure.duration_ms,
            failure.occurred_at,
            outcome,
            failure.kind.value,
            failure.reason,
            None,
        )
    )
    if not account.outdated_by(failure):
        account.last_attempt_at = failure.occurred_at
        account.last_error = f"{failure.kind.value}: {failure.reason}"
        if failure.final:
            account.consecutive_failures += 1
        if failure.kind is FailureKind.AUTH:
            account.needs_reauth = True
    _record_attempt(
        runs,
        failure.request_id,
        account.id,
        failure.occurred_at,
        attempt=failure.attempt,
        status="failed" if failure.final else "retrying",
        failure_kind=failure.kind.value,
        failure_reason=failure.reason,
        next_attempt_at=failure.retry_at,
    )


def _record_attempt(
    runs: dict[uuid.UUID, RunState],
    run_id: uuid.UUID,
    account_id: uuid.UUID,
    at: datetime,
    *,
    attempt: int,
    status: str,
    snapshot_id: uuid.UUID | None = None,
    failure_kind: str | None = None,
    failure_reason: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Record how attempt `attempt` of a run ended, unless news of a later attempt came first:
    failures and snapshots travel on different topics, so their relative order is not guaranteed.
    A snapshot still ends a run that is `failed` at the same attempt: the API closes a run whose
    request Kafka did not acknowledge in time, and the request may have reached Kafka all the same."""
    run = runs.get(run_id)
    if run is None:  # requested by something that did not record the run (an operator's tool)
        run = runs[run_id] = RunState(id=run_id, account_id=account_id, exists=False, requested_at=at)
    elif run.attempts > attempt or (
        run.attempts == attempt
        and run.status in FINISHED_RUN
        and not (status == "succeeded" and run.status == "failed")
    ):
        return
    run.touched = True
    run.status = status
    run.attempts = attempt
    run.finished_at = at if status in FINISHED_RUN else None
    run.snapshot_id = snapshot_id
    run.failure_kind = failure_kind
    run.failure_reason = failure_reason
    run.next_attempt_at = next_attempt_at


__all__ = ["AccountState", "BatchPlan", "RunState", "TradeKind", "UnknownAccount", "plan_batch"]
