"""The fast layer: SQLite in a temp dir and the in-memory bus. Nothing here touches the network."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine, upgrade_schema


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, made once: each test copies it (running every migration
    per test took most of the unit layer's time)."""
    template = tmp_path_factory.mktemp("template") / "migrated.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{template}")
        try:
            await upgrade_schema(engine)
        finally:
            await engine.dispose()  # the last connection out folds the WAL into the file

    asyncio.run(migrate())
    return template


@pytest.fixture
async def engine(tmp_path: Path, migrated_database: Path) -> AsyncIterator[AsyncEngine]:
    database = tmp_path / "unit.db"
    shutil.copyfile(migrated_database, database)
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    yield engine
    await engine.dispose()


@pytest.fixture
async def empty_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database with no schema yet, for migration tests."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    yield engine
    await engine.dispose()
