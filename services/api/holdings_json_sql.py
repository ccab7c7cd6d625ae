"""The holdings responses built by Postgres, for the fast reads (fast_reads.py): the very bytes that
holdings_json.py encodes from positions, an account's lines or a portfolio's consolidated ones (as
consolidation.py makes them), made in the statement that reads the positions. The API then neither
decodes a row per position nor builds a line: for a portfolio's 200 positions, decoding the rows
alone cost the API 1.4 ms of CPU, and the text costs Postgres less than that.

How each piece matches its Python twin (tests/integration/test_api_fast_reads_on_postgres.py
compares the bytes):
- numbers: `trim_scale(x)::text` is schemas.decimal_text (plain notation, no trailing zeros, "0");
  sums and products are exact on both sides (shared.numeric.EXACT in Python);
- the weighted average price: the exact quotient rounded half-even to 8 places, as
  consolidation.rounded_quotient (by hand: Postgres's round() rounds half away from zero);
- strings: `to_json` escapes as the json module with ensure_ascii=False (", \\ and control
  characters only; \\b \\f \\n \\r \\t short, others \\u00xx);
- times: pydantic's AwareDatetime in JSON: UTC, "Z", microseconds only when not whole seconds;
- order: an account's lines as the holdings statement lists them (symbol, exchange, currency,
  account_id); a portfolio's lines in Python's order of (symbol, exchange, currency), code points:
  COLLATE "C" (UTF-8 bytes sort as code points); within a line, the shares by account (the order
  the statement lists them in), which also decides the first ISIN, the first asset type and, among
  equally fresh quotes, the price.

Needs Postgres 13 or later (trim_scale).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    FunctionFilter,
    Over,
    Select,
    SQLColumnExpression,
    Subquery,
    Text,
    case,
    cast,
    collate,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import Grouping, KeyedColumnElement
from sqlalchemy.sql.functions import Function, FunctionElement

from services.api.consolidation import PRICE_PLACES

NOTHING_HELD = "[]"
_NULL: ColumnElement[Any] = literal_column(
    "'null'"
)  # untyped: JSON's null as a json value or as text, as needed

Columns = ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]
Field = tuple[str, str, ColumnElement[Any]]
"""A JSON object's member: its key, how its value sits in the object's `format()` template
(`%s`, or `"%s"` for a text that needs no escaping) and the value's expression."""


def account_holdings(held: Subquery) -> Select[str]:
    """One row, one column: an account's holdings response (`[]` for none) from `held`, the
    holdings statement's rows (storage_history.holdings_of_owner's columns, the time written by
    `time_text`), in any order: the lines are ordered here, as that statement orders them."""
    h = held.c
    line = _object(
        _string("symbol", h.symbol),
        _string("exchange", h.exchange),
        _optional_string("isin", h.isin),
        _string("currency", h.currency),
        _string("asset_type", h.asset_type),
        _number("quantity", h.quantity),
        _number("average_price", h.average_price),
        _optional_number("last_price", h.last_price),
        _optional_number("market_value", h.quantity * h.last_price),
        ("as_of", '"%s"', h.taken_at_text),
    )
    return select(_array(line, h.symbol, h.exchange, h.currency, h.account_id)).select_from(held)


def portfolio_holdings(held: Subquery) -> Select[str]:
    """As `account_holdings`, a portfolio's consolidated holdings response.

    A line's values are window aggregates over its shares in account order: one sort of the rows for
    them all (`held` comes unordered), where an ordered aggregate (`array_agg(.. ORDER BY ..)`) sorts
    its group's input anew, per aggregate and per line (Postgres 15 and before)."""
    h = held.c
    share = _object(
        ("account_id", '"%s"', h.account_id),
        _number("quantity", h.quantity),
        _number("average_price", h.average_price),
        ("as_of", '"%s"', h.taken_at_text),
    )
    size = func.abs(h.quantity, type_=h.quantity.type)

    def over_line(aggregate: FunctionElement[Any] | FunctionFilter[Any]) -> Over[Any]:
        return _over_line(aggregate, h)

    quoted = h.last_price.is_not(None)
    weight = over_line(func.sum(size))
    cost = over_line(func.sum(size * h.average_price))
    prices = over_line(_listed(h.last_price).filter(quoted))
    quoted_at = over_line(_listed(h.taken_at).filter(quoted))
    freshest = over_line(func.max(h.taken_at).filter(quoted))
    shares = (
        select(h.symbol, h.exchange, h.currency)
        .add_columns(
            over_line(func.row_number()).label("place"),
            over_line(_listed(h.isin).filter(h.isin != literal_column("''"))).label("isins"),
            over_line(func.first_value(h.asset_type)).label("asset_type"),
            over_line(func.sum(h.quantity)).label("quantity"),
            weight.label("weight"),
            cost.label("cost"),
            # Computed here once per line; the query above would repeat an expression wherever
            # its column is used.
            _scaled_quotient(cost, weight, PRICE_PLACES).label("scaled_quotient"),
            # The first listed of the freshest quotes.
            Grouping(prices)[func.array_position(quoted_at, freshest)].label("last_price"),
            over_line(func.string_agg(share, literal_column("','"))).label("accounts"),
        )
        .subquery("shares")
    )
    c = shares.c
    average = _rounded_quotient(c.cost, c.weight, c.scaled_quotient, PRICE_PLACES)
    line = _object(
        _string("symbol", c.symbol),
        _string("exchange", c.exchange),
        _string("currency", c.currency),
        _optional_string("isin", c.isins[literal_column("1")]),
        _string("asset_type", c.asset_type),
        _number("quantity", c.quantity),
        _optional_number("average_price", average),
        _optional_number("last_price", c.last_price),
        _optional_number("market_value", c.quantity * c.last_price),
        ("accounts", "[%s]", c.accounts),
    )
    in_code_points = [collate(column, "C") for column in (c.symbol, c.exchange, c.currency)]
    # A line's every share carries its values: its first one stands for the line.
    return select(_array(line, *in_code_points)).select_from(shares).where(c.place == literal_column("1"))


def _array(element: ColumnElement[str], *order: ColumnElement[Any]) -> ColumnElement[str]:
    """The JSON array of one `element` per row, in `order`, as the aggregate of a select."""
    elements = func.string_agg(element, aggregate_order_by(literal_column("','"), *order), type_=Text)
    return func.coalesce(_text("[").concat(elements).concat(_text("]")), _text(NOTHING_HELD)).label("body")


def _object(*fields: Field) -> ColumnElement[str]:
    """A JSON object, its members in this order, compact (no spaces) as json.JSONEncoder's with
    separators (",", ":") writes it. Its values as text: format() looks up a value's output function
    whenever the type changes from the value before, every time it is called."""
    template = ",".join(f'"{key}":{value}' for key, value, _ in fields)
    values = (cast(expression, Text) for _, _, expression in fields)
    return func.format(_text("{" + template + "}"), *values, type_=Text)


def _string(key: str, column: ColumnElement[Any]) -> Field:
    return key, "%s", func.to_json(column)


def _optional_string(key: str, column: ColumnElement[Any]) -> Field:
    return key, "%s", func.coalesce(func.to_json(column), _NULL)


def _number(key: str, value: ColumnElement[Any]) -> Field:
    """A decimal (never null) as schemas.DecimalText gives it, a string."""
    return key, '"%s"', func.trim_scale(value)


def _optional_number(key: str, value: ColumnElement[Any]) -> Field:
    text = _text('"').concat(func.trim_scale(value)).concat(_text('"'))
    return key, "%s", func.coalesce(text, _NULL)


def time_text(moment: SQLColumnExpression[Any]) -> ColumnElement[str]:
    """A time (never null) as pydantic's AwareDatetime is written in JSON, without its quotes: in
    UTC, with "Z", its microseconds only when it has any."""
    utc = func.timezone(_text("UTC"), moment)
    written = func.to_char(utc, _text('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    return func.replace(written, _text(".000000Z"), _text("Z"), type_=Text)


def _over_line(aggregate: FunctionElement[Any] | FunctionFilter[Any], shares: Columns) -> Over[Any]:
    """`aggregate` over all of a line's `shares` (columns symbol, exchange, currency and account_id)
    in account order, the same on each of them. Every such window is the same one, so that one sort
    serves them all; its lines compared as code points (COLLATE "C": byte comparisons and abbreviated
    keys, not the locale's strcoll), which tell the same lines apart as any deterministic collation."""
    line = [collate(column, "C") for column in (shares.symbol, shares.exchange, shares.currency)]
    return aggregate.over(partition_by=line, order_by=shares.account_id, rows=(None, None))


def _listed(value: ColumnElement[Any]) -> Function[Any]:
    """array_agg of `value`: over a line's shares (a window in account order), its first element is
    the value of the first share listed."""
    return func.array_agg(value, type_=ARRAY(value.type))


def _scaled_quotient(top: ColumnElement[Any], bottom: ColumnElement[Any], places: int) -> ColumnElement[Any]:
    """top / bottom times 10**places, truncated towards zero (div on numeric is exact); NULL when
    bottom is 0."""
    return func.div(top * _number_constant(10**places), func.nullif(bottom, _number_constant(0)))


def _rounded_quotient(
    top: ColumnElement[Any], bottom: ColumnElement[Any], scaled_quotient: ColumnElement[Any], places: int
) -> ColumnElement[Any]:
    """top / bottom (bottom >= 0) rounded half-even to `places` decimal places, exactly, from its
    `_scaled_quotient`; NULL when bottom is 0. The remainder by a product, exact too, not by a
    second division, and computed once: a truncated quotient's remainder has the sign of `top`
    (or is 0, and then nothing is added)."""
    remainder = top * _number_constant(10**places) - scaled_quotient * bottom
    # 1 past half-way, 0 a tie (to even: away when the quotient is odd), -1 short of it.
    past_half = func.sign(_number_constant(2) * func.abs(remainder) - bottom)
    odd = func.abs(func.mod(scaled_quotient, _number_constant(2)))
    away = case(
        {_number_constant(1): _number_constant(1), _number_constant(0): odd},
        value=past_half,
        else_=_number_constant(0),
    )
    return (scaled_quotient + func.sign(top) * away) * literal_column(f"1e-{places}")


def _number_constant(value: int) -> ColumnElement[Any]:
    return literal_column(str(value))


def _text(value: str) -> ColumnElement[str]:
    """A text constant written into the SQL (not a parameter to send)."""
    return literal_column("'" + value.replace("'", "''") + "'", Text)
