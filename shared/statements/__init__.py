"""Holdings statements uploaded as CSV: the generic format and Zerodha Console's holdings download.

`parse_statement` reads the whole file or nothing: every row is checked, every problem is reported
with its line (the header is line 1), and one bad row rejects the file. The formats are described
for users in docs/statements.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Protocol

from shared.events import Holding
from shared.statements import _generic, _zerodha_console
from shared.statements._model import ParsedStatement, RowProblem, StatementFormat, StatementRejected
from shared.statements._table import (
    MAX_STATEMENT_BYTES,
    MAX_STATEMENT_ROWS,
    Row,
    UnreadableCsv,
    decode,
    read_rows,
)

__all__ = [
    "MAX_STATEMENT_BYTES",
    "MAX_STATEMENT_ROWS",
    "STATEMENT_BROKER",
    "ParsedStatement",
    "RowProblem",
    "StatementFormat",
    "StatementRejected",
    "parse_statement",
]

STATEMENT_BROKER = "csv"
"""Broker code of accounts fed only by statement imports: no schedule, no fetcher, no "sync now"."""


class _Layout(Protocol):
    """What a format knows once it has read its header."""

    format: StatementFormat
    problems: list[RowProblem]
    statement_date: date | None
    blank_row_ends_table: bool

    def read(self, row: Row, problems: list[RowProblem]) -> Holding | None: ...

    def looks_like_holding(self, row: Row) -> bool: ...


def parse_statement(data: bytes) -> ParsedStatement:
    """The holdings of a CSV statement; StatementRejected, listing every problem, if any row is bad."""
    rows = read_rows(decode(data))
    problems: list[RowProblem] = []
    holdings: list[Holding] = []
    try:
        layout = _layout(rows)
        problems.extend(layout.problems)
        if not problems:  # without a sound header, the rows cannot be read
            holdings = _read_table(layout, rows, problems)
    except UnreadableCsv as exc:
        problems.append(exc.problem)
    if problems:
        raise StatementRejected(problems)
    return ParsedStatement(
        format=layout.format,
        holdings=tuple(holdings),
        statement_date=layout.statement_date,
    )


def _layout(rows: Iterator[Row]) -> _Layout:
    """Which format the file is in, from its header row; the rows before the header are a title block."""
    title_rows: list[Row] = []
    for row in rows:
        if row.blank:
            continue
        if _zerodha_console.is_header(row):
            return _zerodha_console.ZerodhaConsoleLayout(row, title_rows)
        if not title_rows and _generic.is_header(row):
            return _generic.GenericLayout(row)
        title_rows.append(row)
        if len(title_rows) >= _zerodha_console.HEADER_SEARCH_ROWS:
            break
    if not title_rows:
        raise StatementRejected(
            [RowProblem(1, "the file is empty: expected a header row, then one row per holding")]
        )
    raise StatementRejected([_unrecognised(title_rows[0])])


def _unrecognised(first: Row) -> RowProblem:
    if len(first.cells) == 1 and ";" in first.cells[0]:
        return RowProblem(
            first.line, "the file looks separated by semicolons: separate the columns with commas"
        )
    return RowProblem(
        first.line,
        "unrecognised header: expected the generic format's columns "
        f"({', '.join(_generic.REQUIRED_COLUMNS)}, optionally {', '.join(_generic.OPTIONAL_COLUMNS)}) "
        "or a Zerodha Console holdings statement (Symbol, ISIN, ..., Quantity Available, ..., "
        "Average Price, ...); see docs/statements.md",
    )


def _read_table(layout: _Layout, rows: Iterator[Row], problems: list[RowProblem]) -> list[Holding]:
    holdings: list[Holding] = []
    first_line: dict[tuple[str, str], int] = {}
    count = 0
    ended_at: int | None = None
    for row in rows:
        if row.blank:
            if layout.blank_row_ends_table and count:
                ended_at = ended_at or row.line
            continue
        if ended_at is not None:
            if layout.looks_like_holding(row):
                problems.append(
                    RowProblem(
                        row.line,
                        f"a holding after line {ended_at}, the blank line that ends the table: "
                        "remove the blank line",
                    )
                )
            continue
        count += 1
        if count > MAX_STATEMENT_ROWS:
            problems.append(
                RowProblem(
                    row.line, f"more than {MAX_STATEMENT_ROWS} rows: split the statement or contact support"
                )
            )
            break
        holding = layout.read(row, problems)
        if holding is None:
            continue
        key = (holding.symbol, holding.exchange)
        if key in first_line:
            where = f"on {holding.exchange}" if holding.exchange else "(no exchange)"
            problems.append(
                RowProblem(
                    row.line,
                    f"{holding.symbol} {where} is listed twice (first on line {first_line[key]}): "
                    "give each instrument one row",
                )
            )
            continue
        first_line[key] = row.line
        holdings.append(holding)
    return holdings
