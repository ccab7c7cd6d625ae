"""The events' precision check agrees with pydantic's `max_digits=38, decimal_places=18`, which it
replaces, and names the value that does not fit."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from shared.numeric import check_fit, precision_problem

PYDANTIC = TypeAdapter(Annotated[Decimal, Field(max_digits=38, decimal_places=18)])

EDGES = [
    "0", "-0", "1", "0E-30", "0E+30", "1E+19", "1E+20", "1e-18", "1e-19", "123E-20", "1.10E+3",
    "1.000000000000000000", "1.0000000000000000000", "0.0000000000000000000", "-0.123456789012345678",
    "0.1234567890123456789", "12345678901234567890", "123456789012345678901", "100000000000000000000",
    "12345678901234567890.123456789012345678", "123456789012345678901.12345678901234567",
    "12345678901234567890.1234567890123456789", "00000000000000000000000001",
    "99999999999999999999.999999999999999999", "-99999999999999999999.9999999999999999999",
]  # fmt: skip


def _pydantic_accepts(value: Decimal) -> bool:
    try:
        PYDANTIC.validate_python(value)
    except ValidationError:
        return False
    return True


def _random_decimals(count: int) -> list[Decimal]:
    rng = random.Random(4)
    values = []
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 45)))
        values.append(Decimal(f"{rng.choice('+-')}{digits}E{rng.randint(-45, 25)}"))
    return values


@pytest.mark.parametrize("value", EDGES)
def test_agrees_with_pydantic_at_the_edges(value: str) -> None:
    assert (precision_problem(Decimal(value)) is None) == _pydantic_accepts(Decimal(value))


def test_agrees_with_pydantic_on_random_values() -> None:
    values = _random_decimals(5000)
    assert {_pydantic_accepts(v) for v in values} == {True, False}, "both outcomes are exercised"
    assert [v for v in values if (precision_problem(v) is None) != _pydantic_accepts(v)] == []


@dataclass
class _Row:
    quantity: Decimal
    price: Decimal | None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0.0000000000000000001", "has more than 18 decimal places"),
        ("1E-19", "has more than 18 decimal places"),
        ("123456789012345678901", "has more than 20 digits before the decimal point"),
        ("1E+21", "has more than 20 digits before the decimal point"),
    ],
)
def test_check_fit_names_the_value_that_does_not_fit(value: str, problem: str) -> None:
    rows = [_Row(Decimal(1), None), _Row(Decimal(2), Decimal(value))]
    with pytest.raises(ValueError, match=f"^{re.escape(f'rows.1.price: {Decimal(value)} {problem}')}$"):
        check_fit(rows, ("quantity", "price"), field="rows")


def test_check_fit_passes_long_values_that_fit() -> None:
    """Values the quick look cannot settle (long, or with an exponent) are counted exactly."""
    rows = [
        _Row(Decimal("12345678901234567890.123456789012345678"), Decimal("1E+19")),
        _Row(Decimal("1.0000000000000000000000"), Decimal("1E-18")),
    ]
    check_fit(rows, ("quantity", "price"), field="rows")
    check_fit([], ("quantity", "price"), field="rows")
