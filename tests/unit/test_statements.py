"""The statement parser: exact Decimals from text, and every problem of a bad file with its line."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from shared.events import AssetType, Holding
from shared.statements import (
    MAX_STATEMENT_BYTES,
    MAX_STATEMENT_ROWS,
    ParsedStatement,
    RowProblem,
    StatementFormat,
    StatementRejected,
    parse_statement,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fakes" / "data" / "csv"
GENERIC_EXAMPLE = ROOT / "docs" / "examples" / "holdings-generic.csv"
GENERIC_HEADER = "symbol,quantity,average_price,currency"
ZERODHA_HEADER = (
    "Symbol,ISIN,Sector,Quantity Available,Quantity Discrepant,Quantity Long Term,Quantity Pledged (Margin),"
    "Quantity Pledged (Loan),Average Price,Previous Closing Price,Unrealized P&L,Unrealized P&L Pct."
)


def _h(
    symbol: str,
    quantity: str,
    average_price: str,
    currency: str,
    *,
    exchange: str = "",
    isin: str | None = None,
    asset_type: AssetType = AssetType.EQUITY,
    last_price: str | None = None,
) -> Holding:
    return Holding(
        symbol=symbol,
        exchange=exchange,
        isin=isin,
        currency=currency,
        asset_type=asset_type,
        quantity=Decimal(quantity),
        average_price=Decimal(average_price),
        last_price=None if last_price is None else Decimal(last_price),
    )


def _nse(
    symbol: str, isin: str, quantity: str, average_price: str, last_price: str | None, **kw: AssetType
) -> Holding:
    return _h(symbol, quantity, average_price, "INR", exchange="NSE", isin=isin, last_price=last_price, **kw)


GENERIC_HOLDINGS = (
    _h("AAPL", "12", "145.30", "USD", exchange="NASDAQ", isin="US0378331005", last_price="227.52"),
    _h("VWCE", "40.5", "98.12", "EUR", exchange="XETRA", isin="IE00BK5BQT80", asset_type=AssetType.ETF),
    _h("BTC", "0.01234567", "41250.00", "USD", asset_type=AssetType.CRYPTO),
    _h(
        "PPFAS-FLEXI-CAP-DIRECT-GROWTH",
        "250.512",
        "55.2",
        "INR",
        isin="INF879O01027",
        asset_type=AssetType.MUTUAL_FUND,
        last_price="80.1043",
    ),
    _h("INFY", "10", "1450.50", "INR", exchange="NSE", isin="INE009A01021", last_price="1520.35"),
)

ZERODHA_HOLDINGS = (
    _nse("INFY", "INE009A01021", "10", "1450.5", "1520.35"),
    _nse("TCS", "INE467B01029", "5", "3890.25", "4012.8"),  # 3 available + 2 pledged (margin)
    _nse("RELIANCE", "INE002A01018", "25", "2455.1234", "2980.4"),  # 20 available + 5 pledged (loan)
    _nse("M&M", "INE101A01026", "4", "1602.7", "2891.05"),
    _nse("NIFTYBEES", "INF204KB14I2", "150", "212.4567", "268.91", asset_type=AssetType.ETF),
    _nse("SGBAUG28V", "IN0020200195", "8", "5334", "7120", asset_type=AssetType.BOND),
)


def _problems(data: bytes) -> list[tuple[int, str]]:
    with pytest.raises(StatementRejected) as caught:
        parse_statement(data)
    return [(p.line, p.message) for p in caught.value.problems]


def _lines(data: bytes) -> list[int]:
    return [line for line, _ in _problems(data)]


def _generic(*rows: str, header: str = GENERIC_HEADER) -> bytes:
    return "\n".join((header, *rows)).encode()


def _zerodha(*rows: str, title: tuple[str, ...] = (), header: str = ZERODHA_HEADER) -> bytes:
    return "\n".join((*title, header, *rows)).encode()


# --- the generic format ---------------------------------------------------------------------------


def test_the_documented_example_parses_to_exact_decimals() -> None:
    statement = parse_statement(GENERIC_EXAMPLE.read_bytes())

    assert statement == ParsedStatement(StatementFormat.GENERIC, GENERIC_HOLDINGS, statement_date=None)
    # The very digits of the file: no float stood in between.
    assert [str(h.quantity) for h in statement.holdings] == ["12", "40.5", "0.01234567", "250.512", "10"]
    assert [str(h.average_price) for h in statement.holdings] == [
        "145.30",
        "98.12",
        "41250.00",
        "55.2",
        "1450.50",
    ]
    assert all(type(h.quantity) is Decimal and type(h.average_price) is Decimal for h in statement.holdings)


def test_column_order_header_spelling_bom_and_crlf_do_not_matter() -> None:
    shuffled = (
        "\ufeffCurrency , Last Price,QUANTITY,isin,Asset-Type,average_price,Exchange,Symbol\r\n"
        "USD,227.52,12,US0378331005,equity,145.30,NASDAQ,AAPL\r\n"
        "EUR,,40.5,IE00BK5BQT80,ETF,98.12,XETRA,VWCE\r\n"
        "USD,,0.01234567,,crypto,41250.00,,BTC\r\n"
        "INR,80.1043,250.512,INF879O01027,mutual_fund,55.2,,PPFAS-FLEXI-CAP-DIRECT-GROWTH\r\n"
        "INR,1520.35,10,INE009A01021,,1450.50,NSE,INFY\r\n"
    ).encode()

    assert shuffled.startswith(b"\xef\xbb\xbf")
    assert parse_statement(shuffled).holdings == GENERIC_HOLDINGS


def test_values_are_trimmed_and_codes_upper_cased() -> None:
    data = _generic(" aapl , 1 , 2 , usd , nasdaq , us0378331005 ", header=GENERIC_HEADER + ",exchange,isin")

    assert parse_statement(data).holdings == (
        _h("AAPL", "1", "2", "USD", exchange="NASDAQ", isin="US0378331005"),
    )


def test_numbers_keep_every_digit_up_to_the_limits_of_the_event() -> None:
    statement = parse_statement(
        _generic("BIG,12345678901234567890.12345678,0.00000001,USD", "TINY,.5,+7.,EUR")
    )

    assert [h.quantity for h in statement.holdings] == [
        Decimal("12345678901234567890.12345678"),
        Decimal("0.5"),
    ]
    assert [h.average_price for h in statement.holdings] == [Decimal("0.00000001"), Decimal("7")]


def test_a_header_alone_is_a_statement_of_no_holdings() -> None:
    statement = parse_statement(b"symbol,quantity,average_price,currency\r\n\r\n")

    assert statement == ParsedStatement(StatementFormat.GENERIC, ())


def test_every_bad_row_is_reported_with_its_line() -> None:
    problems = _problems((DATA / "generic-bad-rows.csv").read_bytes())

    assert problems == [
        (3, "quantity 'abc' is not a number"),
        (4, "missing symbol"),
        (5, "quantity '-3' is negative: a statement lists what you hold"),
        (6, "average_price '-1' is negative"),
        (7, "currency 'DOLLARS' is not a three-letter ISO 4217 code such as USD or INR"),
        (8, "isin 'US0378331006' is not a valid ISIN (12 characters, ending in a check digit)"),
        (9, "asset_type 'stock' is not one of equity, etf, mutual_fund, bond, crypto, other"),
        (
            10,
            "AAPL on NASDAQ is listed twice (first on line 2): give each instrument one row",
        ),
        (11, "quantity '1.1234567890123456789' has more than 18 decimal places"),
        (12, "average_price '1e3' is not a number"),
        # line 13 is blank: skipped
        (14, "quantity is 0: list only what you hold"),
        (15, "9 values, but the header names 8 columns: an unquoted comma inside a value?"),
        (15, "missing currency"),
        (16, "last_price 'abc' is not a number"),
        (17, "missing quantity"),
        (17, "missing average_price"),
        (17, "missing currency"),
    ]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("1,500", "quantity '1,500' is not a number"),  # no digit grouping in the generic format
        ("NaN", "quantity 'NaN' is not a number"),
        ("Infinity", "quantity 'Infinity' is not a number"),
        ("١٢", "quantity '١٢' is not a number"),  # digits of another script: Decimal() would take them
        ("1 000", "quantity '1 000' is not a number"),
        ("0x10", "quantity '0x10' is not a number"),
        (
            "123456789012345678901",
            "quantity '123456789012345678901' is too large (more than 20 digits before the point)",
        ),
        ("0.0000000000000000001", "quantity '0.0000000000000000001' has more than 18 decimal places"),
    ],
)
def test_a_quantity_must_be_plain_decimal_text(cell: str, message: str) -> None:
    assert _problems(_generic(f'AAPL,"{cell}",1,USD')) == [(2, message)]


def test_a_value_spanning_lines_is_refused_and_later_lines_keep_their_numbers() -> None:
    data = _generic('"AA\nPL",1,2,USD', "MSFT,x,2,USD")

    assert _problems(data) == [
        (2, "symbol 'AA\\nPL' contains a line break or another non-printing character"),
        (4, "quantity 'x' is not a number"),
    ]


def test_a_long_symbol_is_refused() -> None:
    assert _problems(_generic(f"{'A' * 65},1,2,USD")) == [
        (2, f"symbol '{'A' * 37}...' is longer than 64 characters"),
    ]


def test_the_same_symbol_on_two_exchanges_is_two_instruments_but_twice_on_none_is_a_duplicate() -> None:
    header = GENERIC_HEADER + ",exchange"

    assert len(parse_statement(_generic("SHEL,1,2,GBP,LSE", "SHEL,1,2,EUR,AMS", header=header)).holdings) == 2
    assert _problems(_generic("BTC,1,2,USD,", "btc,1,2,EUR,", header=header)) == [
        (
            3,
            "BTC (no exchange) is listed twice (first on line 2): give each instrument one row",
        ),
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "symbol,quantity,currency",
            "missing required column(s): average_price",
        ),
        (
            "symbol,qty,average_price,currency,notes",
            "missing required column(s): quantity",
        ),
        (
            "symbol,quantity,average_price,currency,Symbol",
            "column 'Symbol' appears twice",
        ),
    ],
)
def test_a_bad_generic_header_is_reported_on_line_1(header: str, message: str) -> None:
    problems = _problems(_generic("AAPL,1,2,USD", header=header))

    assert (1, message) in problems
    assert {line for line, _ in problems} == {1}  # rows are not read under a broken header


def test_unknown_columns_are_named() -> None:
    assert _problems(_generic("AAPL,1,2,USD,x", header=GENERIC_HEADER + ",notes")) == [
        (
            1,
            "unknown column(s) 'notes': the generic format has symbol, quantity, average_price, currency "
            "(required) and exchange, isin, asset_type, last_price (optional)",
        )
    ]


# --- the Zerodha Console holdings statement -------------------------------------------------------


def test_the_zerodha_console_sample_parses_to_exact_decimals() -> None:
    statement = parse_statement((DATA / "zerodha-console-holdings.csv").read_bytes())

    # SBIN (quantity 0) holds nothing and is left out.
    assert statement == ParsedStatement(StatementFormat.ZERODHA_CONSOLE, ZERODHA_HOLDINGS, date(2026, 7, 29))
    assert str(statement.holdings[2].average_price) == "2455.1234"


def test_zerodha_columns_in_another_order_without_the_optional_ones_and_without_a_title() -> None:
    data = _zerodha(
        "INFY,1450.5,10",
        "TCS,3890.25,3",
        header="symbol,Average Price,QUANTITY   AVAILABLE",
    )

    statement = parse_statement(data)

    assert statement.format is StatementFormat.ZERODHA_CONSOLE
    assert statement.statement_date is None
    assert statement.holdings == (
        _nse("INFY", None, "10", "1450.5", None),
        _nse("TCS", None, "3", "3890.25", None),
    )


def test_a_zerodha_sheet_saved_with_its_empty_first_column_reads_the_same() -> None:
    # Some parsers of the Console workbook report the table starting at column B.
    shifted = b"\n".join(
        b"," + line for line in (DATA / "zerodha-console-holdings.csv").read_bytes().splitlines()
    )

    assert shifted.startswith(b",Client ID,ZX1234")
    assert parse_statement(shifted) == parse_statement((DATA / "zerodha-console-holdings.csv").read_bytes())


def test_zerodha_long_term_quantity_is_part_of_the_available_quantity_not_added_to_it() -> None:
    statement = parse_statement(_zerodha("INFY,INE009A01021,IT,336,0,169,0,0,10,11,0,0"))

    assert [h.quantity for h in statement.holdings] == [Decimal("336")]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Equity Holdings Statement as on 2026-07-29", date(2026, 7, 29)),
        ("Equity Holdings Statement as on 29-07-2026", date(2026, 7, 29)),
        ("Equity Holdings Statement", None),
    ],
)
def test_the_statement_date_comes_from_the_title_block(title: str, expected: date | None) -> None:
    data = _zerodha("INFY,INE009A01021,IT,1,0,0,0,0,10,11,0,0", title=("Client ID,ZX1234", "", f'"{title}"'))

    assert parse_statement(data).statement_date == expected


def test_an_impossible_statement_date_is_a_problem_of_its_line() -> None:
    data = _zerodha(
        "INFY,INE009A01021,IT,1,0,0,0,0,10,11,0,0", title=("Client ID,ZX1234", "Holdings as on 2026-02-30")
    )

    assert _problems(data) == [(2, "the statement date in 'Holdings as on 2026-02-30' is not a date")]


def test_every_bad_zerodha_row_is_reported_with_its_line() -> None:
    problems = _problems((DATA / "zerodha-console-bad-rows.csv").read_bytes())

    assert problems == [
        (5, "Quantity Available 'ten' is not a number"),
        (
            6,
            "Quantity Discrepant is 2: Console has no purchase record for those shares. Fix the discrepancy "
            "in Console (Portfolio -> Holdings -> View discrepancy) and download again",
        ),
        (
            7,
            "Symbol 'PARAG PARIKH FLEXI CAP FUND - DIRECT ...' is not an NSE trading symbol (only the Equity "
            "sheet of the Console statement can be imported; list mutual funds in the generic format)",
        ),
        (
            8,
            "INFY on NSE is listed twice (first on line 4): give each instrument one row",
        ),
        (9, "Average Price '-410.5' is negative"),
    ]


def test_zerodha_totals_below_a_blank_line_are_ignored_but_a_holding_there_is_refused() -> None:
    totals = _zerodha("INFY,INE009A01021,IT,1,0,0,0,0,10,11,0,0", "", '"Invested Value","4,434,616.35"')
    stray = _zerodha(
        "INFY,INE009A01021,IT,1,0,0,0,0,10,11,0,0", "", "TCS,INE467B01029,IT,2,0,0,0,0,10,11,0,0"
    )

    assert [h.symbol for h in parse_statement(totals).holdings] == ["INFY"]
    assert _problems(stray) == [
        (4, "a holding after line 3, the blank line that ends the table: remove the blank line")
    ]


def test_an_unknown_zerodha_quantity_column_is_refused_and_other_unknown_columns_ignored() -> None:
    unknown_quantity = _zerodha(
        "INFY,1,10,5", header="Symbol,Quantity Available,Average Price,Quantity Blocked"
    )
    unknown_other = _zerodha("INFY,1,10,Tech", header="Symbol,Quantity Available,Average Price,Industry")

    assert _lines(unknown_quantity) == [1]
    assert "unknown column 'Quantity Blocked'" in _problems(unknown_quantity)[0][1]
    assert [h.quantity for h in parse_statement(unknown_other).holdings] == [Decimal("1")]


# --- the file as a whole --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\r\n", b"\xef\xbb\xbf", b",,,\n,,\n"])
def test_an_empty_file_is_rejected(data: bytes) -> None:
    assert _problems(data) == [(1, "the file is empty: expected a header row, then one row per holding")]


def test_an_unknown_header_is_rejected_on_its_line() -> None:
    problems = _problems(b"\nticker,qty,price\nAAPL,1,2\n")

    assert len(problems) == 1
    assert problems[0][0] == 2
    assert problems[0][1].startswith(
        "unrecognised header: expected the generic format's columns (symbol, quantity"
    )


def test_a_semicolon_separated_file_gets_a_hint() -> None:
    assert _problems(b"symbol;quantity;average_price;currency\nAAPL;1;2;USD\n") == [
        (1, "the file looks separated by semicolons: separate the columns with commas")
    ]


def test_a_file_over_5_mb_is_rejected_before_it_is_read() -> None:
    data = _generic("AAPL,1,2,USD") + b"\n" * MAX_STATEMENT_BYTES

    assert len(data) > MAX_STATEMENT_BYTES
    assert _problems(data) == [(0, "the file is larger than the limit of 5 MB (5242880 bytes)")]


def test_50000_rows_are_accepted_and_one_more_is_rejected() -> None:
    rows = [f"S{i},1,1,USD" for i in range(MAX_STATEMENT_ROWS)]

    assert len(parse_statement(_generic(*rows)).holdings) == MAX_STATEMENT_ROWS
    assert _problems(_generic(*rows, "ONE_TOO_MANY,1,1,USD")) == [
        (MAX_STATEMENT_ROWS + 2, "more than 50000 rows: split the statement or contact support")
    ]


def test_text_that_is_not_utf8_is_rejected_with_its_line_and_column() -> None:
    data = b"symbol,quantity,average_price,currency\nAAPL,1,2,USD\nCAF\xc9,1,2,EUR\n"  # Latin-1 "CAFE"

    assert _problems(data) == [(3, "byte 0xC9 at column 4 is not UTF-8: save the file as UTF-8")]


def test_utf16_is_rejected_with_advice() -> None:
    assert _problems(_generic("AAPL,1,2,USD").decode().encode("utf-16")) == [
        (1, "the file is UTF-16 text: save it as CSV in UTF-8")
    ]


def test_broken_quoting_stops_the_reading_but_keeps_the_problems_found_before() -> None:
    data = _generic("MSFT,x,2,USD", 'AAPL,"1"2,2,USD', "GOOG,1,2,USD")

    problems = _problems(data)

    assert [line for line, _ in problems] == [2, 3]
    assert problems[1][1].startswith("malformed CSV (")


def test_one_bad_row_among_many_good_ones_rejects_the_whole_file() -> None:
    rows = [f"S{i},1,1,USD" for i in range(999)]
    rows.insert(500, "BAD,1,1,US")

    with pytest.raises(StatementRejected) as caught:
        parse_statement(_generic(*rows))

    assert caught.value.problems == [
        RowProblem(502, "currency 'US' is not a three-letter ISO 4217 code such as USD or INR")
    ]
    assert str(caught.value).startswith("statement rejected: 1 problem(s): line 502: currency 'US'")
