"""Statements over many rows at once that stay one statement on Postgres, whatever the count.

`column.in_(values)` sends one bound parameter per value: a different statement text for every
count, so asyncpg prepares and Postgres plans it afresh each time, and SQLAlchemy renders thousands
of placeholders. `among` sends Postgres one array instead. An ORM bulk UPDATE is an executemany:
Postgres runs one statement per row. `update_by_id` joins all the rows as arrays (`unnest`) in one
UPDATE; `update_by_id_if_unchanged` is the same UPDATE fenced by an optimistic check, for a table two
writers share. `insert_columns` adds rows to several tables in one statement (an `INSERT .. SELECT
FROM unnest(...)` per table, chained as CTEs): one round trip. `insert_absent` adds the rows whose
key is not stored yet, the lookup inside the INSERT: one round trip rather than two. SQLite (the
embedded mode) has no arrays; it gets the plain forms (`insert_columns` and `insert_absent` are for
Postgres only).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Numeric, Table, any_, bindparam, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.db.tables import Base


def among(column: Any, values: Collection[Any], *, postgres: bool) -> ColumnElement[bool]:
    """`column IN values`, as `column = ANY(array)` on Postgres."""
    if postgres:
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


async def update_by_id(session: AsyncSession, model: type[Base], rows: Sequence[Mapping[str, Any]]) -> None:
    """Set each row's columns (every row names the same ones) on the row of `model` with its `id`."""
    if not rows:
        return
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        await session.execute(update(model), list(rows))
        return
    names = list(rows[0])
    arrays, rows_as_arrays = _unnested(model.__table__, names, _by_column(names, rows), bind.dialect)
    assignments = ", ".join(f"{n} = v.{n}" for n in names if n != "id")
    statement = text(
        f"UPDATE {model.__tablename__} AS t SET {assignments} "  # names from the table; values bound
        f"FROM {rows_as_arrays} WHERE t.id = v.id"
    )
    await session.execute(statement, arrays)


async def update_by_id_if_unchanged(
    session: AsyncSession,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    unchanged: Sequence[str],
    version: str,
) -> int:
    """`update_by_id`, fenced: a row is updated only while its `unchanged` columns still hold the
    values the row gives for them (those read when the update was planned; they are compared, not
    set), and its `version` column (one of `unchanged`) goes up by one. Returns how many rows were
    updated: fewer than `rows` means someone else wrote the others since, and the caller decides."""
    if not rows:
        return 0
    table = model.__table__
    names = list(rows[0])
    assigned = [n for n in names if n != "id" and n not in unchanged]
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        fenced = (
            update(cast(Table, table))
            .where(
                table.c.id == bindparam("was_id"),
                *(table.c[n].is_not_distinct_from(bindparam(f"was_{n}")) for n in unchanged),
            )
            .values({n: bindparam(f"new_{n}") for n in assigned} | {version: table.c[version] + 1})
        )
        parameters = [
            {"was_id": row["id"]}
            | {f"new_{n}": row[n] for n in assigned}
            | {f"was_{n}": row[n] for n in unchanged}
            for row in rows
        ]
        result = await session.execute(fenced, parameters)
        return int(result.rowcount)  # type: ignore[attr-defined]
    arrays, rows_as_arrays = _unnested(table, names, _by_column(names, rows), bind.dialect)
    assignments = ", ".join([*(f"{n} = v.{n}" for n in assigned), f"{version} = t.{version} + 1"])
    fence = " AND ".join(f"t.{n} IS NOT DISTINCT FROM v.{n}" for n in unchanged)
    statement = text(
        f"UPDATE {model.__tablename__} AS t SET {assignments} "  # names from the table; values bound
        f"FROM {rows_as_arrays} WHERE t.id = v.id AND {fence}"
    )
    result = await session.execute(statement, arrays)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def insert_columns(
    session: AsyncSession, tables: Sequence[tuple[type[Base], Sequence[str], Sequence[Sequence[Any]]]]
) -> None:
    """Add rows to each of `tables` (a model, its columns, and the rows' values column by column),
    all in one statement on Postgres. Foreign keys among them hold: Postgres checks them once the
    whole statement has run."""
    inserts = []
    arrays: dict[str, list[Any]] = {}
    dialect = session.get_bind().dialect
    for n, (model, names, columns) in enumerate(t for t in tables if t[2]):
        bound, rows_as_arrays = _unnested(model.__table__, names, columns, dialect, prefix=f"t{n}_")
        arrays |= bound
        inserts.append(
            f"t{n} AS (INSERT INTO {model.__tablename__} ({', '.join(names)}) SELECT * FROM {rows_as_arrays})"
        )
    if inserts:
        # Every data-modifying CTE runs to completion, whether or not the query reads from it.
        await session.execute(text(f"WITH {', '.join(inserts)} SELECT 1"), arrays)


async def insert_absent(
    connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]], *, key: Sequence[str]
) -> None:
    """Add those of `rows` (every row names the same columns) whose `key` columns match no stored row,
    in one statement; Postgres only. A row that a unique index finds stored meanwhile is skipped."""
    if not rows:
        return
    names = list(rows[0])
    table = model.__table__
    arrays, rows_as_arrays = _unnested(table, names, _by_column(names, rows), connection.dialect)
    same_key = " AND ".join(f"t.{n} = v.{n}" for n in key)
    statement = text(
        f"INSERT INTO {model.__tablename__} ({', '.join(names)}) "  # names from the table; values bound
        f"SELECT * FROM {rows_as_arrays} "
        f"WHERE NOT EXISTS (SELECT FROM {model.__tablename__} AS t WHERE {same_key}) ON CONFLICT DO NOTHING"
    )
    await connection.execute(statement, arrays)


def _by_column(names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in names]


def _unnested(
    table: Any, names: Sequence[str], columns: Sequence[Sequence[Any]], dialect: Any, *, prefix: str = ""
) -> tuple[dict[str, list[Any]], str]:
    """The columns as one bound array each (named `prefix` + the column's name), and the FROM item
    `unnest(...) AS v(names)` that turns them back into rows on Postgres."""
    arrays = {}
    casts = []
    for name, values in zip(names, columns, strict=True):
        column_type, key = table.c[name].type, prefix + name
        array_type = f"{column_type.compile(dialect=dialect)}[]"
        if isinstance(getattr(column_type, "impl_instance", column_type), Numeric):
            # As text, which Postgres reads exactly: asyncpg's binary NUMERIC encoding stored
            # 0.123456789012345678 as 0.123456789012345677.
            arrays[key] = [None if value is None else str(value) for value in values]
            casts.append(f"CAST(CAST(:{key} AS TEXT[]) AS {array_type})")
            continue
        process = column_type.bind_processor(dialect)  # e.g. UtcDateTime refuses naive datetimes
        arrays[key] = list(map(process, values)) if process else list(values)
        casts.append(f"CAST(:{key} AS {array_type})")
    return arrays, f"unnest({', '.join(casts)}) AS v({', '.join(names)})"
