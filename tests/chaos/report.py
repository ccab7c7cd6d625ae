"""What a chaos run came to, counted from Postgres, holdings.changes and the fake broker: one row of
the reliability table. Every count but requests, snapshots and seconds must be zero."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

from shared.events import HoldingsChanged
from tests.chaos.stack import ChaosStack

REPORT_ENV = "CHAOS_REPORT"  # a JSON-lines file each run appends its row to (`make chaos` sets it)

SIGNED = {"opening": 1, "buy": 1, "sell": -1, "closing": -1}


@dataclass(frozen=True)
class ChaosReport:
    fault: str
    requests: int  # syncs accepted (202 from the API, or fired by a scheduler)
    refused: int  # "sync now" answered otherwise (503 while the fault lasted): the caller knew
    snapshots: int
    lost: int  # accepted requests that never became a stored snapshot
    requested_twice: int  # sync requests published again under an id already published
    applied_twice: int  # extra snapshots of one request
    announced_twice: int  # extra HoldingsChanged of one snapshot
    out_of_order: int  # changes whose previous quantity or time does not follow the account's last
    unannounced: int  # snapshots that changed positions with no HoldingsChanged seen
    transactions_doubled: int  # extra derived trades of one snapshot and instrument
    trades_off_positions: int  # instruments whose derived trades do not add up to the position
    positions_off_broker: int  # accounts whose current positions differ from the broker's last answer
    runs_off_snapshots: int  # sync runs with a stored snapshot that do not say succeeded
    exited: int  # processes that ended without being stopped or killed on purpose
    seconds: float

    MUST_BE_ZERO = (
        "lost",
        "requested_twice",
        "applied_twice",
        "announced_twice",
        "out_of_order",
        "unannounced",
        "transactions_doubled",
        "trades_off_positions",
        "positions_off_broker",
        "runs_off_snapshots",
        "exited",
    )

    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.MUST_BE_ZERO if getattr(self, name)}

    def record(self) -> None:
        path = os.environ.get(REPORT_ENV)
        if path:
            with Path(path).open("a") as out:
                out.write(json.dumps(dataclasses.asdict(self)) + "\n")


def out_of_order(changes: list[HoldingsChanged]) -> int:
    """Changes that do not follow the account's previous one: each must start from the quantities the
    last left (from nothing, for the first) and be taken later."""
    held: dict[uuid.UUID, dict[tuple[str, str], Decimal]] = {}
    last_taken: dict[uuid.UUID, datetime] = {}
    seen: set[uuid.UUID] = set()
    wrong = 0
    for change in changes:
        if change.snapshot_id in seen:
            continue  # counted as announced twice
        seen.add(change.snapshot_id)
        positions = held.setdefault(change.account_id, {})
        before = last_taken.get(change.account_id)
        broken = before is not None and change.taken_at <= before
        for moved in change.changes:
            key = (moved.symbol, moved.exchange)
            broken |= positions.get(key, Decimal(0)) != moved.previous_quantity
            positions[key] = moved.quantity
        last_taken[change.account_id] = change.taken_at
        wrong += broken
    return wrong


async def count(
    stack: ChaosStack,
    *,
    fault: str,
    accepted: list[uuid.UUID],
    refused: int,
    requested_twice: int,
    changes: list[HoldingsChanged],
    seconds: float,
) -> ChaosReport:
    async with stack.database() as db:
        scheduled = {r["id"] for r in await db.fetch("SELECT id FROM sync_runs WHERE trigger = 'schedule'")}
        requested = set(accepted) | scheduled
        per_request = Counter({r["request_id"]: r["n"] for r in await db.fetch(_SNAPSHOTS_PER_REQUEST)})
        changed = {r["id"] for r in await db.fetch(_ANNOUNCED_SNAPSHOTS)}
        doubled = await db.fetchval(_DOUBLED_TRADES)
        trades_off = await db.fetchval(_TRADES_OFF_POSITIONS)
        current = await _current_positions(db)
        runs_off = await db.fetchval(_RUNS_OFF_SNAPSHOTS)
    by_snapshot = Counter(c.snapshot_id for c in changes)
    off_broker = sum(
        current.get(account_id, {}) != stack.broker.last_reported.get(key_id, {})
        for account_id, key_id in stack.key_ids.items()
    )
    return ChaosReport(
        fault=fault,
        requests=len(requested),
        refused=refused,
        snapshots=sum(per_request.values()),
        lost=len(requested - per_request.keys()),
        requested_twice=requested_twice,
        applied_twice=sum(n - 1 for n in per_request.values() if n > 1),
        announced_twice=sum(n - 1 for n in by_snapshot.values() if n > 1),
        out_of_order=out_of_order(changes),
        unannounced=len(changed - by_snapshot.keys()),
        transactions_doubled=doubled,
        trades_off_positions=trades_off,
        positions_off_broker=off_broker,
        runs_off_snapshots=runs_off,
        exited=len(stack.services.exited()),
        seconds=round(seconds, 1),
    )


async def _current_positions(db: asyncpg.Connection) -> dict[uuid.UUID, dict[str, Decimal]]:
    rows = await db.fetch(f"SELECT account_id AS id, symbol, quantity FROM ({_CURRENT_HOLDINGS}) AS h")
    current: dict[uuid.UUID, dict[str, Decimal]] = {}
    for row in rows:
        current.setdefault(row["id"], {})[row["symbol"]] = Decimal(row["quantity"])
    return current


# Each account's current holdings: its current snapshot's own rows, or its newest open versions.
_CURRENT_HOLDINGS = """
SELECT a.id AS account_id, h.symbol, h.exchange, h.quantity
FROM broker_accounts a JOIN snapshots s ON s.id = a.current_snapshot_id AND s.holdings_kept
JOIN snapshot_holdings h ON h.snapshot_id = s.id
UNION ALL
SELECT a.id, v.symbol, v.exchange, v.quantity
FROM broker_accounts a JOIN snapshots s ON s.id = a.current_snapshot_id AND NOT s.holdings_kept
JOIN LATERAL (
    SELECT DISTINCT ON (symbol, exchange) symbol, exchange, quantity FROM position_versions
    WHERE account_id = a.id ORDER BY symbol, exchange, valid_from DESC
) v ON v.quantity IS NOT NULL
"""
_SNAPSHOTS_PER_REQUEST = "SELECT request_id, count(*) AS n FROM snapshots GROUP BY request_id"
_ANNOUNCED_SNAPSHOTS = "SELECT id FROM snapshots WHERE announcement_id IS NOT NULL"
_RUNS_OFF_SNAPSHOTS = """
SELECT count(*) FROM sync_runs r
WHERE r.status <> 'succeeded' AND EXISTS (SELECT 1 FROM snapshots s WHERE s.request_id = r.id)
"""
_DOUBLED_TRADES = """
SELECT count(*) - count(DISTINCT (snapshot_id, symbol, exchange)) FROM transactions WHERE origin = 'derived'
"""
_TRADES_OFF_POSITIONS = f"""
WITH traded AS (
    SELECT account_id, symbol, exchange,
           sum(quantity * CASE kind {" ".join(f"WHEN '{k}' THEN {s}" for k, s in SIGNED.items())} END) AS qty
    FROM transactions WHERE origin = 'derived' GROUP BY account_id, symbol, exchange
), held AS (
    SELECT account_id, symbol, exchange, quantity AS qty FROM ({_CURRENT_HOLDINGS}) AS h
)
SELECT count(*) FROM traded FULL JOIN held USING (account_id, symbol, exchange)
WHERE coalesce(traded.qty, 0) <> coalesce(held.qty, 0)
"""
