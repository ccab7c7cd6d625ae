"""`shared.db.sets` on Postgres: arrays sent as literals (UUIDs, integers, numbers) come back exactly,
NULLs included, beside arrays sent as lists."""

from __future__ import annotations

import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Numeric, Table, Text, Uuid, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import session_factory
from shared.db.sets import among, insert_columns, update_by_id

_probe = Table(
    "sets_probe",
    MetaData(),
    Column("id", Uuid, primary_key=True),
    Column("ref", Uuid, nullable=True),
    Column("n", BigInteger, nullable=True),
    Column("amount", Numeric, nullable=True),
    Column("note", Text, nullable=True),
)
# What `insert_columns` and `update_by_id` take of a model: its table and its name.
_model: Any = SimpleNamespace(__table__=_probe, __tablename__="sets_probe")


async def test_arrays_as_literals_round_trip_exactly_nulls_included(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_probe.create)
    ids = [uuid.uuid4() for _ in range(3)]
    refs = [uuid.uuid4(), None, uuid.uuid4()]
    numbers = [2**40, None, -7]
    amounts = [Decimal("0.123456789012345678"), Decimal("-1E+3"), None]
    notes = ['a "quoted", {braced} \\ note', None, "NULL"]
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        columns = [ids, refs, numbers, amounts, notes]
        await insert_columns(session, [(_model, ["id", "ref", "n", "amount", "note"], columns)])
        await update_by_id(session, _model, [{"id": ids[2], "ref": None, "n": 5}])
    async with sessions() as session:
        rows = {
            row.id: tuple(row[1:])
            for row in await session.execute(
                select(_probe).where(
                    among(_probe.c.id, ids, postgres=True), among(_probe.c.n, [2**40, 5, -7], postgres=True)
                )
            )
        }
    assert rows == {
        ids[0]: (refs[0], 2**40, Decimal("0.123456789012345678"), notes[0]),
        ids[2]: (None, 5, None, "NULL"),
    }
