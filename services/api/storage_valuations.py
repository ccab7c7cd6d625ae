"""A portfolio's value over time, per currency, from its accounts' snapshot history.

One query picks, for each account and each of up to `points` equal slices of the range, the last
valid snapshot taken in that slice (and the last one before the range, which the range starts
from), and sums quantity x last price of what it lists per currency. Python then carries each
account's value forward from slice to slice and adds the accounts up: a point is what the
positions the accounts held at its time were worth, each at the price its own snapshot reported
(the consolidated holdings price an instrument held in two accounts at the fresher quote of the
two), whatever the length of the history.

The contract (points of time, currency and value) says nothing of how history is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Integer, and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from services.api.storage_history import holdings_of
from shared.db.tables import BrokerAccount, Snapshot, SnapshotStatus

VALUE_SCALE = Decimal("0.00000001")
"""Values are given to 8 decimal places: SQLite (the demo's database) sums through binary floating
point, which this rounding makes exact again for any amount below 10^7; Postgres sums exactly."""

_BEFORE = -1
"""The slice of the snapshots taken before the range: the values the range starts from."""


@dataclass(frozen=True)
class Valuation:
    """What the portfolio's positions in one currency were worth at `at`."""

    at: datetime
    currency: str
    value: Decimal


class _SliceOf(FunctionElement[int]):
    """The index of the `width`-second slice, counted from epoch second `origin`, that a time falls
    in (times at or after `origin` only); each dialect spells the epoch its own way."""

    type = Integer()
    name = "slice_of"
    inherit_cache = True


@compiles(_SliceOf, "postgresql")
def _slice_on_postgres(element: _SliceOf, compiler: SQLCompiler, **kw: Any) -> str:
    moment, origin, width = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(FLOOR((EXTRACT(EPOCH FROM {moment}) - {origin}) / {width}) AS INTEGER)"


@compiles(_SliceOf, "sqlite")
def _slice_on_sqlite(element: _SliceOf, compiler: SQLCompiler, **kw: Any) -> str:
    moment, origin, width = (compiler.process(c, **kw) for c in element.clauses)
    # Julian day 2440587.5 is the Unix epoch; CAST truncates, which is FLOOR for the positive
    # offsets it is given here.
    return f"CAST(((julianday({moment}) - 2440587.5) * 86400.0 - {origin}) / {width} AS INTEGER)"


async def first_snapshot_at(session: AsyncSession, portfolio_id: uuid.UUID) -> datetime | None:
    """When the portfolio's oldest valid snapshot was taken; None before its first sync."""
    return await session.scalar(
        select(func.min(Snapshot.taken_at))
        .join(BrokerAccount, BrokerAccount.id == Snapshot.account_id)
        .where(BrokerAccount.portfolio_id == portfolio_id, Snapshot.status.in_(SnapshotStatus.VALID))
    )


async def portfolio_valuations(
    session: AsyncSession, portfolio_id: uuid.UUID, *, since: datetime, until: datetime, points: int
) -> list[Valuation]:
    """The portfolio's value per currency from `since` to `until` (both inclusive), oldest first: a
    point at `since` if anything was held then, and one at the newest snapshot of each slice of the
    range in which any account synced (so at most `points` + 1 per currency). Holdings without a
    last price count for nothing."""
    width = (until - since).total_seconds() / points
    # Each account's history is read from its last snapshot before the range on (one index probe per
    # account), not from its first: a short range of a long history reads only what it shows.
    before = aliased(Snapshot)
    last_before = (
        select(before.taken_at)
        .where(
            before.account_id == BrokerAccount.id,
            before.status.in_(SnapshotStatus.VALID),
            before.taken_at < since,
        )
        .order_by(before.taken_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    starts = (
        select(BrokerAccount.id.label("account_id"), func.coalesce(last_before, since).label("start"))
        .where(BrokerAccount.portfolio_id == portfolio_id)
        .cte("starts")
        # Else Postgres inlines it and probes the index once per snapshot instead of once per account.
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    slice_index = case(
        (Snapshot.taken_at < since, _BEFORE),
        else_=_SliceOf(Snapshot.taken_at, _bound(since.timestamp()), _bound(width)),
    )
    ranked = (
        select(
            Snapshot.id,
            Snapshot.account_id,
            Snapshot.taken_at,
            slice_index.label("slice"),
            func.row_number()
            .over(
                partition_by=(Snapshot.account_id, slice_index),
                # As the as-of holdings choose: the newest, and of two taken at once the applied one.
                order_by=(
                    Snapshot.taken_at.desc(),
                    case((Snapshot.status == SnapshotStatus.APPLIED, 0), else_=1),
                    Snapshot.id.desc(),
                ),
            )
            .label("rank"),
        )
        .join(starts, starts.c.account_id == Snapshot.account_id)
        .where(
            Snapshot.taken_at >= starts.c.start,
            Snapshot.taken_at <= until,
            Snapshot.status.in_(SnapshotStatus.VALID),
        )
        .subquery()
    )
    picked = (
        await session.execute(
            select(ranked.c.id, ranked.c.slice, ranked.c.account_id, ranked.c.taken_at)
            .where(ranked.c.rank == 1)
            .order_by(ranked.c.slice, ranked.c.account_id)
        )
    ).all()
    # What each picked snapshot held, wherever it is kept (its own rows, or the versions and the
    # price series at its time): one statement.
    holdings = await holdings_of(
        session,
        and_(Snapshot.id.in_([row.id for row in picked]), Snapshot.account_id == BrokerAccount.id),
        BrokerAccount.portfolio_id == portfolio_id,
    )
    worth: dict[tuple[uuid.UUID, datetime], dict[str, Decimal]] = {}
    for line in holdings:
        if line.last_price is not None:
            per_currency = worth.setdefault((line.account_id, line.taken_at), {})
            per_currency[line.currency] = per_currency.get(line.currency, Decimal(0)) + (
                Decimal(line.quantity) * Decimal(line.last_price)
            )
    rows: list[tuple[int, uuid.UUID, datetime, str | None, Any]] = []
    for row in picked:
        values = worth.get((row.account_id, row.taken_at))
        # A snapshot that lists nothing (or nothing priced) says the account is worth 0 now.
        rows.extend(
            [(row.slice, row.account_id, row.taken_at, c, v) for c, v in values.items()]
            if values
            else [(row.slice, row.account_id, row.taken_at, None, None)]
        )
    return _carried_forward(rows, since=since)


def _bound(number: float) -> Any:
    return literal(number, Float())


def _carried_forward(
    rows: Iterable[tuple[int, uuid.UUID, datetime, str | None, Any]], *, since: datetime
) -> list[Valuation]:
    """Sum the accounts' values slice by slice, each account worth what its latest snapshot says; a
    currency the portfolio no longer holds is worth 0 from then on, not left at its last value."""
    by_account: dict[uuid.UUID, dict[str, Decimal]] = {}
    by_slice: dict[int, list[tuple[uuid.UUID, datetime, str | None, Any]]] = {}
    for slice_index, account_id, taken_at, currency, value in rows:
        by_slice.setdefault(slice_index, []).append((account_id, taken_at, currency, value))
    seen: set[str] = set()
    valuations: list[Valuation] = []
    for slice_index in sorted(by_slice):
        listed = by_slice[slice_index]
        for account_id in {account_id for account_id, _, _, _ in listed}:
            by_account[account_id] = {}
        for account_id, _, currency, value in listed:
            if currency is not None:
                by_account[account_id][currency] = Decimal(str(value))
        at = since if slice_index == _BEFORE else max(taken_at for _, taken_at, _, _ in listed)
        totals = dict.fromkeys(seen, Decimal(0))
        for values in by_account.values():
            for currency, value in values.items():
                totals[currency] = totals.get(currency, Decimal(0)) + value
        seen.update(totals)
        valuations.extend(
            Valuation(at=at, currency=currency, value=total.quantize(VALUE_SCALE))
            for currency, total in sorted(totals.items())
        )
    return valuations
