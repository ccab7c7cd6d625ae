"""Accounts and their history written as the schema before versions stored them (revision 0013):
every snapshot with its own holdings rows. For the tests of migration 0014 and of moving history."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import TextClause, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.types import ExactDecimal, UtcDateTime

OLD_REVISION = "0013"
CREATED = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OldSnapshot:
    taken_at: datetime
    status: str  # applied, late, held, dismissed
    holdings: Mapping[str, tuple[str, str]]  # symbol: (quantity, last price), all on NSE at cost 100
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        return {s: (Decimal(q), Decimal(p)) for s, (q, p) in self.holdings.items()}


_TYPES = {
    **dict.fromkeys(("u", "p", "a", "s", "current", "held"), Uuid()),
    **dict.fromkeys(("t", "as_of"), UtcDateTime()),
    **dict.fromkeys(("q", "price"), ExactDecimal()),
}


def statement(sql: str) -> TextClause:
    """`sql` with its parameters typed (ids, times, amounts) as both databases need them."""
    names = set(re.findall(r":(\w+)", sql))
    return text(sql).bindparams(*(bindparam(k, type_=t) for k, t in _TYPES.items() if k in names))


def _newest(snapshots: Sequence[OldSnapshot], status: str) -> OldSnapshot | None:
    of_status = [s for s in snapshots if s.status == status]
    return max(of_status, key=lambda s: s.taken_at) if of_status else None


async def fill_old_layout(engine: AsyncEngine, accounts: Mapping[uuid.UUID, Sequence[OldSnapshot]]) -> None:
    """One user and portfolio holding `accounts`, each pointing at its newest applied snapshot (and
    held at its newest held one), on a database at OLD_REVISION."""
    user, portfolio = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            statement("INSERT INTO users (id, email, created_at) VALUES (:u, :email, :t)"),
            {"u": user, "email": f"{user.hex}@x.test", "t": CREATED},
        )
        await conn.execute(
            statement(
                "INSERT INTO portfolios (id, user_id, name, created_at, active) "
                "VALUES (:p, :u, 'p', :t, true)"
            ),
            {"p": portfolio, "u": user, "t": CREATED},
        )
        await conn.execute(
            statement(
                "INSERT INTO broker_accounts (id, portfolio_id, broker, label, created_at, "
                "current_snapshot_id, positions_as_of, held_snapshot_id, consecutive_failures, "
                "needs_reauth, ledger_version) "
                "VALUES (:a, :p, 'sim', 'x', :t, :current, :as_of, :held, 0, false, 3)"
            ),
            [
                {
                    "a": account,
                    "p": portfolio,
                    "t": CREATED,
                    "current": current.id if (current := _newest(snapshots, "applied")) else None,
                    "as_of": current.taken_at if current else None,
                    "held": held.id if (held := _newest(snapshots, "held")) else None,
                }
                for account, snapshots in accounts.items()
            ],
        )
        await conn.execute(
            statement(
                "INSERT INTO snapshots (id, account_id, request_id, taken_at, received_at, "
                "holdings_count, status) VALUES (:s, :a, :s, :t, :t, :n, :status)"
            ),
            [
                {"s": s.id, "a": account, "t": s.taken_at, "n": len(s.holdings), "status": s.status}
                for account, snapshots in accounts.items()
                for s in snapshots
            ],
        )
        rows = [
            {"s": s.id, "sym": symbol, "q": Decimal(quantity), "price": Decimal(price)}
            for snapshots in accounts.values()
            for s in snapshots
            for symbol, (quantity, price) in s.holdings.items()
        ]
        if rows:
            await conn.execute(
                statement(
                    "INSERT INTO snapshot_holdings (snapshot_id, symbol, exchange, currency, asset_type, "
                    "quantity, average_price, last_price) "
                    "VALUES (:s, :sym, 'NSE', 'INR', 'equity', :q, 100, :price)"
                ),
                rows,
            )
