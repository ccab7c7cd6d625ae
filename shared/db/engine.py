"""Engines and sessions for Postgres (asyncpg) and SQLite (aiosqlite), and the schema gate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.db.errors import is_transient_db_error
from shared.db.ownership import SCHEMA_VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0016"
"""The newest migration's revision, which a service's database must be at. Written here, not read
from the migrations: Alembic (with Mako and Pygments) is some 10 MB of every service's memory, and
a service only needs it to migrate (`portfolio-sync db upgrade`). tests/unit/test_migrations.py
holds it equal to Alembic's head."""


class DatabaseUnavailable(RuntimeError):
    """The database did not answer; the message names where it was looked for."""


class SchemaOutOfDate(RuntimeError):
    """The database is not at the newest migration; run `portfolio-sync db upgrade`."""


POOL_SIZE = 10
"""Connections a Postgres engine keeps open (it opens up to 10 more for a burst)."""


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if not url.startswith("postgresql+asyncpg://"):
        scheme = url.split(":", 1)[0]
        raise ValueError(
            f"DATABASE_URL must be postgresql+asyncpg://... or sqlite+aiosqlite:///..., not {scheme}:"
        )
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=10)
    event.listen(engine.sync_engine, "checkout", _closed_by_the_server)
    return engine


def _closed_by_the_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection the server has closed (a restart, pg_terminate_backend): the
    pool replaces it, as `pool_pre_ping` would, but without a round trip. SQLAlchemy's pre-ping on
    asyncpg costs three (BEGIN, a ping, ROLLBACK) per checkout: a third of the ledger's round trips
    per batch. A connection that dies unannounced fails its first statement instead, which every
    caller treats as transient (`shared.db.errors`), and SQLAlchemy then drops the pool's others."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config  # only to migrate: see SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade_schema(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every pending Alembic migration (up to `revision`)."""
    from alembic import command  # only to migrate: see SCHEMA_HEAD

    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as conn:
        if sqlite:
            # A batch migration rebuilds a table (copy, drop, rename); with foreign keys on, the drop
            # would cascade to every row that refers to it. The pragma only takes outside a transaction.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            await conn.run_sync(lambda sync_conn: command.upgrade(_alembic_config(sync_conn), revision))
            await conn.commit()
        finally:
            if sqlite:
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()


async def assert_schema_current(engine: AsyncEngine) -> None:
    """Refuse to run against a database that is behind (or ahead of) this code's migrations."""

    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(schema_revision)
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"cannot reach the database at {where}: {exc}") from exc
    if current != SCHEMA_HEAD:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, this code needs {SCHEMA_HEAD}: "
            "run `portfolio-sync db upgrade`"
        )


def schema_revision(connection: Connection) -> str | None:
    """The migration the database is at (Alembic's `alembic_version`), or None before the first."""
    if not inspect(connection).has_table(SCHEMA_VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {SCHEMA_VERSION_TABLE}")).scalar()
