"""A fresh, migrated database with many broker accounts, for the benchmarks."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from infra import PostgresService
from shared.db.engine import create_engine, session_factory, upgrade_schema
from shared.db.tables import BrokerAccount, Portfolio, User


async def fresh_database(postgres: PostgresService, name: str, revision: str = "head") -> str:
    """Drop and create database `name`, migrate it (to `revision`), return its URL."""
    admin = await asyncpg.connect(postgres.dsn)
    try:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except asyncpg.InsufficientPrivilegeError:
            # FORCE may not end an autovacuum worker (it has no role: only a superuser may), and one
            # runs on a database a run has just filled; a plain DROP ends autovacuum workers itself.
            # Nor a session of a service's role that a stopped process left closing: wait for it.
            await _drop_once_unused(admin, name)
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = postgres.url.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    await upgrade_schema(engine, revision)
    await engine.dispose()
    return url


async def _drop_once_unused(admin: asyncpg.Connection, name: str, *, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except asyncpg.ObjectInUseError as exc:
            if time.monotonic() > deadline:
                sessions = await admin.fetch(
                    "SELECT pid, usename, application_name, backend_type, state, left(query, 80) AS query "
                    "FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                raise RuntimeError(
                    f"database {name} still in use after {within_s:.0f} s by: {[dict(s) for s in sessions]}"
                ) from exc
            await asyncio.sleep(0.2)  # until the other sessions have closed


async def create_accounts(url: str, count: int) -> list[uuid.UUID]:
    """`count` simulated-broker accounts in one portfolio of one user."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    ids = [uuid.uuid4() for _ in range(count)]
    async with sessions.begin() as session:
        user = User(email=f"bench-{uuid.uuid4().hex}@example.test")
        session.add(user)
        await session.flush()
        portfolio = Portfolio(user_id=user.id, name="bench")
        session.add(portfolio)
        await session.flush()
        session.add_all(
            BrokerAccount(
                id=i,
                portfolio_id=portfolio.id,
                broker="sim",
                label="bench",
                consecutive_failures=0,
                needs_reauth=False,
            )
            for i in ids
        )
    await engine.dispose()
    return ids
