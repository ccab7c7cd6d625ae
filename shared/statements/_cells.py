"""Parsers of single cells. Each returns the value or raises CellProblem with a message for the user."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from pydantic import ValidationError

from shared.events import AssetType, Holding
from shared.numeric import DECIMAL_PLACES, WHOLE_DIGITS
from shared.statements._model import RowProblem

# The limits of a Holding's numbers (shared.numeric): 18 decimal places, 20 digits before the point.
MAX_DECIMAL_PLACES = DECIMAL_PLACES
MAX_WHOLE_DIGITS = WHOLE_DIGITS
MAX_SYMBOL_LENGTH = 64
MAX_EXCHANGE_LENGTH = 32

# ASCII digits only: Decimal() would also accept other scripts' digits, exponents, NaN and Infinity.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_GROUPED_NUMBER = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{2,3})+(?:\.[0-9]*)?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ISIN = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")

T = TypeVar("T")


class CellProblem(ValueError):
    """One cell's value is unusable; the message names the column and the value."""


def quoted(value: str, limit: int = 40) -> str:
    """The value as the user typed it, shortened: problems repeat what they refer to."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def required(value: str, column: str) -> str:
    if not value:
        raise CellProblem(f"missing {column}")
    return value


def bounded(value: str, column: str, max_length: int) -> str:
    """Text of at most `max_length` characters, on one line."""
    if len(value) > max_length:
        raise CellProblem(f"{column} {quoted(value)} is longer than {max_length} characters")
    if not value.isprintable():
        raise CellProblem(f"{column} {quoted(value)} contains a line break or another non-printing character")
    return value


def number(value: str, column: str, *, grouping: bool = False) -> Decimal:
    """A decimal number written in plain notation (1234.5); with `grouping`, also 1,234.5 or 1,23,456.5."""
    text = value
    if grouping and _GROUPED_NUMBER.fullmatch(text):
        text = text.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(text):
        raise CellProblem(f"{column} {quoted(value)} is not a number")
    amount = Decimal(text)
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number, by the pattern above
    if -exponent > MAX_DECIMAL_PLACES:
        raise CellProblem(f"{column} {quoted(value)} has more than {MAX_DECIMAL_PLACES} decimal places")
    if amount and amount.adjusted() >= MAX_WHOLE_DIGITS:
        raise CellProblem(
            f"{column} {quoted(value)} is too large (more than {MAX_WHOLE_DIGITS} digits before the point)"
        )
    return amount


def not_negative(amount: Decimal, value: str, column: str) -> Decimal:
    if amount < 0:
        raise CellProblem(f"{column} {quoted(value)} is negative")
    return amount


def currency(value: str, column: str) -> str:
    code = value.upper()
    if not _CURRENCY.fullmatch(code):
        raise CellProblem(f"{column} {quoted(value)} is not a three-letter ISO 4217 code such as USD or INR")
    return code


def isin(value: str, column: str) -> str | None:
    """None for an empty cell; otherwise a well-formed ISIN whose check digit is right."""
    if not value:
        return None
    code = value.upper()
    if not _ISIN.fullmatch(code) or not _isin_check_digit_ok(code):
        raise CellProblem(
            f"{column} {quoted(value)} is not a valid ISIN (12 characters, ending in a check digit)"
        )
    return code


def _isin_check_digit_ok(code: str) -> bool:
    # ISO 6166: letters become numbers (A=10 ... Z=35), then the Luhn check over all the digits.
    digits = "".join(str(int(char, 36)) for char in code)
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return total % 10 == 0


ASSET_TYPES = ", ".join(t.value for t in AssetType)


def asset_type(value: str, column: str) -> AssetType:
    if not value:
        return AssetType.EQUITY
    try:
        return AssetType(value.lower())
    except ValueError:
        raise CellProblem(f"{column} {quoted(value)} is not one of {ASSET_TYPES}") from None


class RowCheck:
    """Runs every cell parser of one row and keeps every problem instead of stopping at the first."""

    def __init__(self, line: int) -> None:
        self.line = line
        self.problems: list[RowProblem] = []

    def __call__(self, parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except CellProblem as exc:
            self.problems.append(RowProblem(self.line, str(exc)))
            return None

    def holding(self, build: Callable[[], Holding]) -> Holding | None:
        """The Holding, or the model's own complaints should a value pass the checks above but not it."""
        try:
            return build()
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "row"
                self.problems.append(RowProblem(self.line, f"{field}: {error['msg']}"))
            return None
