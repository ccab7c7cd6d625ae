from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import assert_schema_current
from shared.db.tables import Base


async def test_the_migrations_build_exactly_the_tables_the_models_describe(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == [], "models changed without a migration"
    await assert_schema_current(engine)
