"""The generic format: one header row naming the columns, then one row per holding.

Columns in any order; names are case-insensitive, and spaces or hyphens in them read as
underscores. Required: `symbol, quantity, average_price, currency`; optional: `exchange, isin,
asset_type, last_price`. docs/statements.md describes it for users: keep the two in step.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from shared.events import Holding
from shared.statements import _cells as cells
from shared.statements._model import RowProblem, StatementFormat
from shared.statements._table import Row

REQUIRED_COLUMNS = ("symbol", "quantity", "average_price", "currency")
OPTIONAL_COLUMNS = ("exchange", "isin", "asset_type", "last_price")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_SEPARATORS = re.compile(r"[\s\-]+")


def column_name(cell: str) -> str:
    return _SEPARATORS.sub("_", cell.strip().casefold())


def is_header(row: Row) -> bool:
    """Whether the row means to be a generic header: it names at least one of the columns."""
    return any(column_name(cell) in COLUMNS for cell in row.cells)


class GenericLayout:
    """Which cell holds which column, read from the header row; `problems` are the header's own."""

    format: StatementFormat = StatementFormat.GENERIC
    statement_date: date | None = None  # the format carries none
    blank_row_ends_table: bool = False

    def __init__(self, header: Row) -> None:
        self.columns: dict[str, int] = {}
        self.problems: list[RowProblem] = []
        self._width = sum(1 for cell in header.cells if cell)
        unknown: list[str] = []
        for index, cell in enumerate(header.cells):
            name = column_name(cell)
            if not name:
                continue  # an unnamed column; a value under it is a problem of its row
            if name in self.columns:
                self.problems.append(RowProblem(header.line, f"column {cells.quoted(cell)} appears twice"))
            elif name in COLUMNS:
                self.columns[name] = index
            else:
                unknown.append(cell)
        missing = [name for name in REQUIRED_COLUMNS if name not in self.columns]
        if missing:
            self.problems.append(RowProblem(header.line, f"missing required column(s): {', '.join(missing)}"))
        if unknown:
            self.problems.append(
                RowProblem(
                    header.line,
                    f"unknown column(s) {', '.join(map(cells.quoted, unknown))}: the generic format has "
                    f"{', '.join(REQUIRED_COLUMNS)} (required) and {', '.join(OPTIONAL_COLUMNS)} (optional)",
                )
            )

    def read(self, row: Row, problems: list[RowProblem]) -> Holding | None:
        """The row's holding; None, with every reason appended to `problems`, if it has none."""
        check = cells.RowCheck(row.line)
        named = set(self.columns.values())
        if any(cell and index not in named for index, cell in enumerate(row.cells)):
            check.problems.append(
                RowProblem(
                    row.line,
                    f"{len(row.cells)} values, but the header names {self._width} columns: "
                    "an unquoted comma inside a value?",
                )
            )

        def cell(name: str) -> str:
            index = self.columns.get(name)
            return row.cells[index] if index is not None and index < len(row.cells) else ""

        symbol = check(
            lambda: _text(cells.required(cell("symbol"), "symbol"), "symbol", cells.MAX_SYMBOL_LENGTH)
        )
        exchange = check(lambda: _text(cell("exchange"), "exchange", cells.MAX_EXCHANGE_LENGTH))
        quantity = check(lambda: _quantity(cells.required(cell("quantity"), "quantity")))
        average_price = check(
            lambda: _price(cells.required(cell("average_price"), "average_price"), "average_price")
        )
        currency = check(lambda: cells.currency(cells.required(cell("currency"), "currency"), "currency"))
        isin = check(lambda: cells.isin(cell("isin"), "isin"))
        asset_type = check(lambda: cells.asset_type(cell("asset_type"), "asset_type"))
        last_price = check(lambda: _price(cell("last_price"), "last_price") if cell("last_price") else None)
        holding = None
        if not check.problems:
            assert symbol is not None and exchange is not None and quantity is not None
            assert average_price is not None and currency is not None and asset_type is not None
            holding = check.holding(
                lambda: Holding(
                    symbol=symbol,
                    exchange=exchange,
                    isin=isin,
                    currency=currency,
                    asset_type=asset_type,
                    quantity=quantity,
                    average_price=average_price,
                    last_price=last_price,
                )
            )
        problems.extend(check.problems)
        return holding

    def looks_like_holding(self, row: Row) -> bool:
        return not row.blank


def _text(value: str, column: str, max_length: int) -> str:
    return cells.bounded(value.upper(), column, max_length)


def _quantity(value: str) -> Decimal:
    amount = cells.number(value, "quantity")
    if amount < 0:
        raise cells.CellProblem(
            f"quantity {cells.quoted(value)} is negative: a statement lists what you hold"
        )
    if amount == 0:
        raise cells.CellProblem("quantity is 0: list only what you hold")
    return amount


def _price(value: str, column: str) -> Decimal:
    return cells.not_negative(cells.number(value, column), value, column)
