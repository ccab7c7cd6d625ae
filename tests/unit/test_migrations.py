from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Uuid, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import MIGRATIONS, SCHEMA_HEAD, SchemaOutOfDate, assert_schema_current, upgrade_schema
from shared.db.tables import Base, BrokerAccount
from shared.db.types import UtcDateTime


async def test_the_migrations_build_exactly_the_tables_the_models_describe(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == [], "models changed without a migration"
    await assert_schema_current(engine)


def test_the_schema_services_require_is_the_newest_migration() -> None:
    """A new migration must move `SCHEMA_HEAD` too (services check it without Alembic)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


async def test_a_service_refuses_a_database_behind_the_migrations(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0015'"))
    with pytest.raises(SchemaOutOfDate) as refused:
        await assert_schema_current(engine)
    assert str(refused.value) == (
        f"database schema is at 0015, this code needs {SCHEMA_HEAD}: run `portfolio-sync db upgrade`"
    )
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
    with pytest.raises(SchemaOutOfDate, match="at nothing"):
        await assert_schema_current(engine)


async def test_upgrading_past_0003_points_each_account_at_the_snapshot_its_positions_came_from(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade_schema(empty_engine, "0002")
    ids = {name: uuid.uuid4() for name in ("user", "portfolio", "account", "idle", "snapshot")}
    now = datetime.now(UTC)
    statements = [
        (
            "INSERT INTO users (id, email, api_token_hash, created_at) VALUES (:user, 'm@x.test', 'h', :now)",
            {},
        ),
        ("INSERT INTO portfolios (id, user_id, name, created_at) VALUES (:portfolio, :user, 'p', :now)", {}),
        *(
            (
                "INSERT INTO broker_accounts (id, portfolio_id, broker, label, created_at, "
                "positions_as_of, consecutive_failures, needs_reauth) "
                "VALUES (:a, :portfolio, 'sim', 'x', :now, :now, 0, false)",
                {"a": ids[key]},
            )
            for key in ("account", "idle")
        ),
        (
            "INSERT INTO snapshots (id, account_id, request_id, taken_at, received_at, holdings_count) "
            "VALUES (:snapshot, :account, :snapshot, :now, :now, 1)",
            {},
        ),
        (
            "INSERT INTO snapshot_holdings (snapshot_id, symbol, exchange, currency, asset_type, quantity, "
            "average_price) VALUES (:snapshot, 'TCS', 'NSE', 'INR', 'equity', 3, 10)",
            {},
        ),
        (
            "INSERT INTO positions (account_id, symbol, exchange, currency, asset_type, quantity, "
            "average_price, as_of, snapshot_id) "
            "VALUES (:account, 'TCS', 'NSE', 'INR', 'equity', 3, 10, :now, :snapshot)",
            {},
        ),
    ]
    async with empty_engine.begin() as conn:
        for sql, extra in statements:
            values = {k: v for k, v in (ids | extra | {"now": now}).items() if f":{k}" in sql}
            typed = [bindparam(k, type_=UtcDateTime() if k == "now" else Uuid()) for k in values]
            await conn.execute(text(sql).bindparams(*typed), values)
    await upgrade_schema(empty_engine)

    async with empty_engine.connect() as conn:
        rows = await conn.execute(select(BrokerAccount.id, BrokerAccount.current_snapshot_id))
        pointers = {account_id: snapshot_id for account_id, snapshot_id in rows}
    assert pointers == {ids["account"]: ids["snapshot"], ids["idle"]: None}


async def test_upgrading_past_0007_keeps_every_user_signed_in_with_the_token_they_had(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade_schema(empty_engine, "0006")
    user = uuid.uuid4()
    async with empty_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, api_token_hash, created_at) VALUES (:u, 'k@x.test', 'h1', :n)"
            ).bindparams(bindparam("u", type_=Uuid()), bindparam("n", type_=UtcDateTime())),
            {"u": user, "n": datetime.now(UTC)},
        )
    await upgrade_schema(empty_engine)
    async with empty_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name, token_hash, scope FROM api_tokens"))).all()
        role = await conn.scalar(text("SELECT role FROM users"))
    assert [tuple(r) for r in rows] == [("default", "h1", "write")]
    assert role == "user"
