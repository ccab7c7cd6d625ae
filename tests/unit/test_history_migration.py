"""Migration 0014 on a database filled in the old layout (every snapshot with its own holdings):
the applied snapshots become versions and prices, the others keep their rows, and every read gives
what it gave before. Run again on Postgres by tests/integration/test_history_migration_on_postgres.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Uuid, bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.api.storage import account_snapshot
from services.ledger.handlers import Ledger
from shared.bus.memory import InMemoryBus
from shared.db.engine import upgrade_schema
from shared.db.tables import PositionVersion, SnapshotHolding
from shared.db.types import ExactDecimal, UtcDateTime
from shared.events import Holding, HoldingSnapshot
from tests.support.positions import positions_of

T0 = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
ACCOUNT, PORTFOLIO, USER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
# name: (minutes after T0, status, {symbol: (quantity, last price)})
SNAPSHOTS = {
    "first": (0, "applied", {"TCS": ("10", "110"), "INFY": ("5", "20")}),
    "prices_moved": (15, "applied", {"TCS": ("10", "111"), "INFY": ("5", "21")}),
    "late": (10, "late", {"TCS": ("9", "109")}),
    "changed": (30, "applied", {"TCS": ("12", "112")}),
    "held": (45, "held", {}),
}
IDS = {name: uuid.uuid4() for name in SNAPSHOTS}


def _at(name: str) -> datetime:
    return T0 + timedelta(minutes=SNAPSHOTS[name][0])


async def _fill_old_layout(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, created_at) VALUES (:u, 'h@x.test', :t)").bindparams(
                bindparam("u", type_=Uuid()), bindparam("t", type_=UtcDateTime())
            ),
            {"u": USER, "t": T0},
        )
        await conn.execute(
            text(
                "INSERT INTO portfolios (id, user_id, name, created_at, active) "
                "VALUES (:p, :u, 'p', :t, true)"
            ).bindparams(
                bindparam("p", type_=Uuid()),
                bindparam("u", type_=Uuid()),
                bindparam("t", type_=UtcDateTime()),
            ),
            {"p": PORTFOLIO, "u": USER, "t": T0},
        )
        await conn.execute(
            text(
                "INSERT INTO broker_accounts (id, portfolio_id, broker, label, created_at, "
                "current_snapshot_id, positions_as_of, held_snapshot_id, consecutive_failures, "
                "needs_reauth, ledger_version) "
                "VALUES (:a, :p, 'sim', 'x', :t, :current, :as_of, :held, 0, false, 3)"
            ).bindparams(
                *(bindparam(k, type_=Uuid()) for k in ("a", "p", "current", "held")),
                *(bindparam(k, type_=UtcDateTime()) for k in ("t", "as_of")),
            ),
            {
                "a": ACCOUNT,
                "p": PORTFOLIO,
                "t": T0,
                "current": IDS["changed"],
                "as_of": _at("changed"),
                "held": IDS["held"],
            },
        )
        for name, (_, status, holdings) in SNAPSHOTS.items():
            await conn.execute(
                text(
                    "INSERT INTO snapshots (id, account_id, request_id, taken_at, received_at, "
                    "holdings_count, status) VALUES (:s, :a, :s, :t, :t, :n, :status)"
                ).bindparams(
                    *(bindparam(k, type_=Uuid()) for k in ("s", "a")), bindparam("t", type_=UtcDateTime())
                ),
                {"s": IDS[name], "a": ACCOUNT, "t": _at(name), "n": len(holdings), "status": status},
            )
            for symbol, (quantity, price) in holdings.items():
                await conn.execute(
                    text(
                        "INSERT INTO snapshot_holdings (snapshot_id, symbol, exchange, currency, asset_type, "
                        "quantity, average_price, last_price) "
                        "VALUES (:s, :sym, 'NSE', 'INR', 'equity', :q, 100, :p)"
                    ).bindparams(
                        bindparam("s", type_=Uuid()),
                        bindparam("q", type_=ExactDecimal()),
                        bindparam("p", type_=ExactDecimal()),
                    ),
                    {"s": IDS[name], "sym": symbol, "q": Decimal(quantity), "p": Decimal(price)},
                )


def _expected(name: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {s: (Decimal(q), Decimal(p)) for s, (q, p) in SNAPSHOTS[name][2].items()}


async def test_history_moves_into_versions_and_reads_as_before(empty_engine: AsyncEngine) -> None:
    await upgrade_schema(empty_engine, "0013")
    await _fill_old_layout(empty_engine)
    await upgrade_schema(empty_engine)

    sessions = async_sessionmaker(empty_engine, expire_on_commit=False)
    async with sessions() as session:
        for name in SNAPSHOTS:
            found = await account_snapshot(session, account_id=ACCOUNT, snapshot_id=IDS[name])
            assert found is not None
            assert {h.symbol: (h.quantity, h.last_price) for h in found[1]} == _expected(name), name
        as_of = {
            "first": _at("first"),
            "late": _at("late") + timedelta(minutes=1),
            "prices_moved": _at("prices_moved"),
            "changed": _at("held") + timedelta(minutes=1),  # the held snapshot never was the positions
        }
        for name, at in as_of.items():
            positions = await positions_of(session, ACCOUNT, as_of=at)
            assert {p.symbol: (p.quantity, p.last_price) for p in positions} == _expected(name), name
        current = await positions_of(session, ACCOUNT)
        assert {p.symbol: (p.quantity, p.last_price) for p in current} == _expected("changed")
        # Applied snapshots keep no rows: first opens two, the price moves add none, changed two.
        assert await session.scalar(select(func.count()).select_from(PositionVersion)) == 4
        kept = set(await session.scalars(select(SnapshotHolding.snapshot_id).distinct()))
        assert kept == {IDS["late"]}  # the held one lists nothing

    # The ledger goes on from the moved history: only what changes is a new version.
    later = T0 + timedelta(hours=1)
    snapshot = HoldingSnapshot(
        account_id=ACCOUNT,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=later,
        holdings=(
            Holding(
                symbol="TCS",
                exchange="NSE",
                currency="INR",
                quantity=Decimal(12),
                average_price=Decimal(100),
                last_price=Decimal(113),
            ),
            Holding(
                symbol="HDFC",
                exchange="NSE",
                currency="INR",
                quantity=Decimal(1),
                average_price=Decimal(100),
                last_price=Decimal(50),
            ),
        ),
    )
    await Ledger(sessions=sessions, bus=InMemoryBus()).apply_batch([snapshot])
    async with sessions() as session:
        current = await positions_of(session, ACCOUNT)
        assert {p.symbol: (p.quantity, p.last_price) for p in current} == {
            "HDFC": (Decimal(1), Decimal(50)),
            "TCS": (Decimal(12), Decimal(113)),
        }
        assert await session.scalar(select(func.count()).select_from(PositionVersion)) == 5
