"""Migration 0016 on Postgres: prices and raw answers partitioned by month, existing rows kept as the
first partition, months created ahead, and raw answers' ended months dropped whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.fetcher.archive import ArchivedAnswer
from services.fetcher.archive_database import DatabaseArchive
from shared.db.engine import upgrade_schema
from shared.db.ownership import Service
from shared.db.partitions import create_months_ahead
from tests.integration.test_service_roles_on_postgres import role_settings, roles  # noqa: F401  (fixtures)

PRICE = "INSERT INTO instrument_prices (symbol, exchange, at, price, source)"


def _month(offset: int) -> datetime:
    """The first instant of this month (UTC) plus `offset` months."""
    now = datetime.now(UTC)
    months = now.year * 12 + now.month - 1 + offset
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


def _answer(
    account_id: uuid.UUID, body: bytes, received_at: datetime, run_id: uuid.UUID | None = None
) -> ArchivedAnswer:
    return ArchivedAnswer(
        run_id=run_id or uuid.uuid4(),
        attempt=1,
        account_id=account_id,
        broker="zerodha",
        received_at=received_at,
        status_code=200,
        body=body,
        snapshot_id=None,
    )


async def _partition_of(engine: AsyncEngine, table: str, column: str, value: datetime) -> str:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(f"SELECT tableoid::regclass::text FROM {table} WHERE {column} = :v"), {"v": value}
        )
    return str(found)


async def test_upgrading_to_0016_keeps_the_rows_as_the_first_partition_and_drops_ended_months(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade_schema(empty_engine, "0015")
    account, old = uuid.uuid4(), datetime.now(UTC) - timedelta(days=40)
    async with empty_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, created_at) VALUES (:u, 'p@x.test', now())"), {"u": account}
        )
        await conn.execute(
            text(
                "INSERT INTO portfolios (id, user_id, name, created_at, active) "
                "VALUES (:u, :u, 'p', now(), true)"
            ),
            {"u": account},
        )
        await conn.execute(
            text(
                "INSERT INTO broker_accounts (id, portfolio_id, broker, label, created_at, "
                "consecutive_failures, needs_reauth) VALUES (:u, :u, 'zerodha', 'x', now(), 0, false)"
            ),
            {"u": account},
        )
        await conn.execute(
            text(f"{PRICE} VALUES ('TCS', 'NSE', :at, 1, 'x')"),
            {"at": old},
        )
    archive = DatabaseArchive(empty_engine)
    await archive.keep([_answer(account, b"before", old)])

    await upgrade_schema(empty_engine)

    assert await _partition_of(empty_engine, "instrument_prices", "at", old) == (
        "history_partitions.instrument_prices_legacy"
    )
    assert await _partition_of(empty_engine, "raw_answers", "received_at", old) == (
        "history_partitions.raw_answers_legacy"
    )
    ahead = _month(2)
    async with empty_engine.begin() as conn:
        assert await create_months_ahead(conn, "raw_answers") == 0, "the migration made them"
        await conn.execute(
            text(f"{PRICE} VALUES ('TCS', 'NSE', :at, 2, 'x')"),
            {"at": ahead},
        )
        ids = list(await conn.scalars(text("SELECT id FROM instrument_prices ORDER BY at")))
    assert await _partition_of(empty_engine, "instrument_prices", "at", ahead) == (
        f"history_partitions.instrument_prices_{ahead:%Y_%m}"
    )
    assert ids[1] > ids[0], "the new table draws ids from the old one's sequence"

    next_month = _month(1) + timedelta(days=3)
    first = _answer(account, b"next month", next_month)
    sent: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(empty_engine.sync_engine, "before_cursor_execute", count)
    await archive.keep([first, _answer(account, b"in two months", ahead)])
    event.remove(empty_engine.sync_engine, "before_cursor_execute", count)
    assert len(sent) == 1, f"a batch of answers is one INSERT, the lookup of stored ones inside it: {sent}"
    await archive.keep(
        [_answer(account, b"redelivered", next_month + timedelta(hours=1), run_id=first.run_id)]
    )
    assert [a.body for a in await archive.answers_of(account, since=None)] == [
        b"before",
        b"next month",
        b"in two months",
    ]

    # A cutoff at the end of next month: that month goes whole, the old row is deleted.
    assert await archive.prune(received_before=_month(2)) == 2
    assert [a.body for a in await archive.answers_of(account, since=None)] == [b"in two months"]
    async with empty_engine.connect() as conn:
        partitions = set(
            await conn.scalars(
                text(
                    "SELECT relname FROM pg_class "
                    "WHERE relnamespace = 'history_partitions'::regnamespace AND relkind = 'r'"
                )
            )
        )
    assert f"raw_answers_{_month(1):%Y_%m}" not in partitions
    assert {
        f"raw_answers_{ahead:%Y_%m}",
        "raw_answers_legacy",
        f"raw_answers_from_{_month(3):%Y_%m}",
    } <= partitions

    # Past the months made: the last partition takes it, and keeps it when the months move on.
    far = _month(7)
    async with empty_engine.begin() as conn:
        await conn.execute(text(f"{PRICE} VALUES ('TCS', 'NSE', :at, 3, 'x')"), {"at": far})
        assert await create_months_ahead(conn, "instrument_prices") == 0
    assert await _partition_of(empty_engine, "instrument_prices", "at", far) == (
        f"history_partitions.instrument_prices_from_{_month(3):%Y_%m}"
    )


async def test_only_the_tables_writers_create_and_drop_their_months(
    roles: dict[Service, AsyncEngine],  # noqa: F811  (the fixture imported above)
) -> None:
    async with roles["ledger"].begin() as conn:
        assert await create_months_ahead(conn, "instrument_prices") == 0  # the migration made them
    for service, statement, refusal in (
        ("api", "SELECT drop_raw_answer_partitions(now())", "may delete raw answers"),
        ("ledger", "SELECT create_history_partitions('raw_answers', 2)", "may insert into raw_answers"),
    ):
        async with roles[service].connect() as conn:
            with pytest.raises(DBAPIError, match=refusal):
                await conn.execute(text(statement))
