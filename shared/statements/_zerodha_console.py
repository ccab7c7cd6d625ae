"""The holdings statement of Zerodha's back office, Console (Portfolio -> Holdings -> Download).

Zerodha publishes no specification of this file. The layout below is what independent parsers of
real downloads agree on (sources in docs/statements.md): a title block ("Client ID", "Equity
Holdings Statement as on YYYY-MM-DD"), then a table with the header

    Symbol, ISIN, Sector, Quantity Available, Quantity Discrepant, Quantity Long Term,
    Quantity Pledged (Margin), Quantity Pledged (Loan), Average Price, Previous Closing Price,
    Unrealized P&L, Unrealized P&L Pct.

Console serves it as an Excel workbook; saved as CSV (its Equity sheet) it reads as below. Because
the exact header could not be confirmed against Zerodha's own documentation, the table is found by
its three essential columns (Symbol, Quantity Available, Average Price) wherever it starts, in any
column order; Sector, the P&L columns and any column we do not know are ignored, except an unknown
"Quantity ..." column, which could change what is held and so is refused.

What a row means:
- quantity held = Quantity Available + Quantity Pledged (Margin) + Quantity Pledged (Loan): pledged
  shares are still owned. Quantity Long Term is a subset of Quantity Available (a real file showed
  336 available against 169 long term), so it is not added.
- Quantity Discrepant is refused: those are shares Console has no purchase record for, and whether
  Quantity Available already counts them is not documented. Guessing could double or drop them.
- Everything is INR on NSE (Console gives no exchange); Previous Closing Price becomes last_price.
- asset type from the ISIN: INE... equity, INF... (fund units traded on the exchange) etf,
  IN + digit (government securities, sovereign gold bonds) bond.
- A row whose quantity comes to 0 holds nothing and is skipped.
- The table ends at its first blank row (Console may write totals below it); a row after that
  which still looks like a holding is refused rather than silently dropped.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from shared.events import AssetType, Holding
from shared.statements import _cells as cells
from shared.statements._model import RowProblem, StatementFormat
from shared.statements._table import Row

CURRENCY = "INR"
EXCHANGE = "NSE"
HEADER_SEARCH_ROWS = 30
"""The title block is a few rows; the header is looked for among the first non-blank rows."""

SYMBOL = "Symbol"
ISIN = "ISIN"
AVAILABLE = "Quantity Available"
DISCREPANT = "Quantity Discrepant"
LONG_TERM = "Quantity Long Term"
PLEDGED_MARGIN = "Quantity Pledged (Margin)"
PLEDGED_LOAN = "Quantity Pledged (Loan)"
AVERAGE_PRICE = "Average Price"
PREVIOUS_CLOSE = "Previous Closing Price"
_READ = (
    SYMBOL,
    ISIN,
    AVAILABLE,
    DISCREPANT,
    LONG_TERM,
    PLEDGED_MARGIN,
    PLEDGED_LOAN,
    AVERAGE_PRICE,
    PREVIOUS_CLOSE,
)
_IGNORED = ("Sector", "Unrealized P&L", "Unrealized P&L Pct.", "Unrealized P&L %")
_ESSENTIAL = (SYMBOL, AVAILABLE, AVERAGE_PRICE)

# NSE trading symbols: letters, digits and & - _ . (M&M, BAJAJ-AUTO); never spaces.
_NSE_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9&_.\-]*")
_AS_ON_ISO = re.compile(r"as on\s+(\d{4})-(\d{1,2})-(\d{1,2})\b", re.IGNORECASE)
_AS_ON_DMY = re.compile(r"as on\s+(\d{1,2})[-/](\d{1,2})[-/](\d{4})\b", re.IGNORECASE)


def _key(cell: str) -> str:
    return " ".join(cell.split()).casefold()


_KNOWN = {_key(name): name for name in _READ + _IGNORED}


def is_header(row: Row) -> bool:
    keys = {_key(cell) for cell in row.cells}
    return all(_key(name) in keys for name in _ESSENTIAL)


class ZerodhaConsoleLayout:
    format: StatementFormat = StatementFormat.ZERODHA_CONSOLE
    blank_row_ends_table: bool = True

    def __init__(self, header: Row, title_rows: list[Row]) -> None:
        self.columns: dict[str, int] = {}
        self.problems: list[RowProblem] = []
        for index, cell in enumerate(header.cells):
            name = _KNOWN.get(_key(cell))
            if name is None:
                if _key(cell).startswith("quantity"):
                    self.problems.append(
                        RowProblem(
                            header.line,
                            f"unknown column {cells.quoted(cell)}: it may change the quantity held, so the "
                            "file is not imported; convert it to the generic format (docs/statements.md)",
                        )
                    )
                continue
            if name in self.columns:
                self.problems.append(RowProblem(header.line, f"column {cells.quoted(cell)} appears twice"))
            self.columns[name] = index
        self.statement_date: date | None = self._statement_date(title_rows)

    def _statement_date(self, title_rows: list[Row]) -> date | None:
        for row in title_rows:
            for cell in row.cells:
                iso, dmy = _AS_ON_ISO.search(cell), _AS_ON_DMY.search(cell)
                parts = (iso.group(1), iso.group(2), iso.group(3)) if iso else None
                if dmy:
                    parts = (dmy.group(3), dmy.group(2), dmy.group(1))
                if parts is None:
                    continue
                try:
                    return date(int(parts[0]), int(parts[1]), int(parts[2]))
                except ValueError:
                    self.problems.append(
                        RowProblem(row.line, f"the statement date in {cells.quoted(cell, 60)} is not a date")
                    )
                    return None
        return None

    def _cell(self, row: Row, name: str) -> str:
        index = self.columns.get(name)
        return row.cells[index] if index is not None and index < len(row.cells) else ""

    def looks_like_holding(self, row: Row) -> bool:
        try:
            cells.number(self._cell(row, AVAILABLE), AVAILABLE, grouping=True)
        except cells.CellProblem:
            return False
        return bool(self._cell(row, SYMBOL))

    def read(self, row: Row, problems: list[RowProblem]) -> Holding | None:
        """The row's holding; None if it holds nothing or, with the reasons in `problems`, is bad."""
        check = cells.RowCheck(row.line)
        symbol = check(lambda: _symbol(cells.required(self._cell(row, SYMBOL), SYMBOL)))
        isin = check(lambda: cells.isin(self._cell(row, ISIN), ISIN))
        available = check(lambda: self._quantity(row, AVAILABLE, required=True))
        pledged_margin = check(lambda: self._quantity(row, PLEDGED_MARGIN))
        pledged_loan = check(lambda: self._quantity(row, PLEDGED_LOAN))
        check(lambda: self._quantity(row, LONG_TERM))  # not added, but it must be a number too
        check(lambda: _no_discrepancy(self._quantity(row, DISCREPANT)))
        average_price = check(lambda: self._price(row, AVERAGE_PRICE, required=True))
        last_price = check(lambda: self._price(row, PREVIOUS_CLOSE))
        holding = None
        if not check.problems:
            assert symbol is not None and available is not None and average_price is not None
            quantity = available + (pledged_margin or 0) + (pledged_loan or 0)
            if quantity:
                holding = check.holding(
                    lambda: Holding(
                        symbol=symbol,
                        exchange=EXCHANGE,
                        isin=isin,
                        currency=CURRENCY,
                        asset_type=_asset_type(isin),
                        quantity=quantity,
                        average_price=average_price,
                        last_price=last_price,
                    )
                )
        problems.extend(check.problems)
        return holding

    def _quantity(self, row: Row, column: str, *, required: bool = False) -> Decimal:
        value = self._cell(row, column)
        if not value and not required:
            return Decimal(0)
        amount = cells.number(cells.required(value, column), column, grouping=True)
        return cells.not_negative(amount, value, column)

    def _price(self, row: Row, column: str, *, required: bool = False) -> Decimal | None:
        value = self._cell(row, column)
        if not value and not required:
            return None
        amount = cells.number(cells.required(value, column), column, grouping=True)
        return cells.not_negative(amount, value, column)


def _symbol(value: str) -> str:
    symbol = cells.bounded(value.upper(), SYMBOL, cells.MAX_SYMBOL_LENGTH)
    if not _NSE_SYMBOL.fullmatch(symbol):
        raise cells.CellProblem(
            f"{SYMBOL} {cells.quoted(value)} is not an NSE trading symbol (only the Equity sheet of the "
            "Console statement can be imported; list mutual funds in the generic format)"
        )
    return symbol


def _no_discrepancy(discrepant: Decimal) -> None:
    if discrepant:
        raise cells.CellProblem(
            f"{DISCREPANT} is {discrepant}: Console has no purchase record for those shares. Fix the "
            "discrepancy in Console (Portfolio -> Holdings -> View discrepancy) and download again"
        )


def _asset_type(isin: str | None) -> AssetType:
    if isin is None or isin.startswith("INE"):
        return AssetType.EQUITY
    if isin.startswith("INF"):
        return AssetType.ETF
    if isin.startswith("IN") and isin[2].isdigit():
        return AssetType.BOND
    return AssetType.EQUITY
