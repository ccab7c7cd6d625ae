"""The engine's pool hands out no connection the server has closed, without a ping per checkout."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.waiting import eventually


async def test_a_connection_the_server_closed_is_replaced_at_checkout(
    engine: AsyncEngine, database_url: str
) -> None:
    async with engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        pooled = (await conn.get_raw_connection()).driver_connection
    assert pooled is not None  # back in the pool, its only connection
    terminator = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await terminator.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await terminator.close()

    async def closed() -> bool:
        return bool(pooled.is_closed())

    await eventually(closed, what="the driver to see the server close the connection")
    async with engine.connect() as conn:
        # Handed the dead connection, this would fail: "connection is closed".
        assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
