"""A fresh, migrated Postgres database per test, cloned from a template migrated once per session.

Cloning (CREATE DATABASE ... TEMPLATE) takes tens of milliseconds, so tests that count rows or
claim "every due schedule" can run against real Postgres without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import asyncpg
from sqlalchemy.engine import make_url

from shared.db.engine import create_engine, upgrade_schema
from shared.db.ownership import SERVICES, Service

DROP_ATTEMPTS = 10


class DatabaseCloner:
    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._template: str | None = None

    def url_of(self, database: str) -> str:
        return self._url.set(database=database).render_as_string(hide_password=False)

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url_of(self._url.database or "postgres").replace("+asyncpg", ""))

    async def _create(self, name: str, template: str | None = None) -> None:
        conn = await self._admin()
        try:
            clause = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{clause}')
        finally:
            await conn.close()

    async def fresh(self) -> str:
        """The URL of a new database at the newest migration."""
        if self._template is None:
            template = f"tpl_{uuid.uuid4().hex[:12]}"
            await self._create(template)
            engine = create_engine(self.url_of(template))
            try:
                await upgrade_schema(engine)
            finally:
                await engine.dispose()
            self._template = template
        name = f"test_{uuid.uuid4().hex[:12]}"
        await self._create(name, self._template)
        return self.url_of(name)

    async def empty(self) -> str:
        """The URL of a new database with no tables at all."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        await self._create(name)
        return self.url_of(name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        conn = await self._admin()
        try:
            for attempt in range(DROP_ATTEMPTS):
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    return
                except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                    # FORCE may not end a backend of another role (an autovacuum worker that just
                    # started on the database, on a busy machine): it ends on its own, so ask again.
                    if attempt == DROP_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
        finally:
            await conn.close()


def service_role_urls(database_url: str) -> dict[Service, str]:
    """A URL per service of `database_url`'s database, each as a new role with a unique name (roles
    are the whole cluster's) and password: what `db roles` creates from <SERVICE>_DATABASE_URL."""
    owner = make_url(database_url)
    unique = uuid.uuid4().hex[:8]
    return {
        service: owner.set(
            username=f"{service}_{unique}", password=f"pw-{service}-{unique}"
        ).render_as_string(hide_password=False)
        for service in SERVICES
    }


async def drop_roles(database_url: str, urls: Iterable[str]) -> None:
    """Drop the roles of `urls`, once nothing in `database_url`'s database is granted to them."""
    names = [make_url(url).username for url in urls]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for name in names:
                await conn.exec_driver_sql(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{name}"')
                await conn.exec_driver_sql(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{name}"')
        async with engine.connect() as conn:
            for name in names:
                await conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
                await conn.commit()
    finally:
        await engine.dispose()
