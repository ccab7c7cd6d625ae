"""The consolidation rules on their own, without HTTP or a database."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from services.api.consolidation import Position, consolidate, rounded_quotient
from shared.numeric import EXACT


def _position(quantity: str, average_price: str, *, account: uuid.UUID | None = None) -> Position:
    return Position(
        account_id=account or uuid.uuid4(),
        symbol="X",
        exchange="",
        isin=None,
        currency="EUR",
        asset_type="etf",
        quantity=Decimal(quantity),
        average_price=Decimal(average_price),
        last_price=Decimal("2"),
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_the_weighted_average_keeps_eight_decimal_places() -> None:
    (holding,) = consolidate([_position("1", "1"), _position("2", "2")])

    assert holding.quantity == Decimal("3")
    assert holding.average_price == Decimal("1.66666667")
    assert holding.market_value == Decimal("6")


def test_a_short_in_one_account_does_not_flip_the_average_price() -> None:
    (holding,) = consolidate([_position("10", "100"), _position("-5", "110")])

    assert holding.quantity == Decimal("5")
    assert holding.average_price is not None
    assert Decimal("100") < holding.average_price < Decimal("110")


def test_a_flat_position_has_no_average_price_instead_of_dividing_by_zero() -> None:
    (holding,) = consolidate([_position("0", "100")])

    assert holding.quantity == Decimal("0")
    assert holding.average_price is None
    assert holding.market_value == Decimal("0")


def test_nothing_held_is_no_lines() -> None:
    assert consolidate([]) == []


def _half_even(numerator: Decimal, denominator: Decimal, places: int) -> Decimal:
    """The rule spelt with fractions: Fraction's round() rounds half to even."""
    rounded = round(Fraction(numerator) / Fraction(denominator), places)
    assert 10**places % rounded.denominator == 0
    return EXACT.scaleb(Decimal(rounded.numerator * (10**places // rounded.denominator)), -places)


@pytest.mark.parametrize(
    ("numerator", "denominator", "places", "expected"),
    [
        ("5", "2", 0, "2"),  # a tie rounds to the even neighbour: down
        ("7", "2", 0, "4"),  # and up
        ("-5", "2", 0, "-2"),
        ("-7", "2", 0, "-4"),
        ("5", "-2", 0, "-2"),
        ("-27", "10", 0, "-3"),
        ("0.000000015", "1", 8, "0.00000002"),
        ("0.000000025", "1", 8, "0.00000002"),
        ("0.0000000250000000000000000000000001", "1", 8, "0.00000003"),  # a hair past the tie
        ("-0.000000001", "3", 8, "0"),
        ("5", "3", 8, "1.66666667"),
        ("1", "1", 8, "1"),
    ],
)
def test_rounded_quotient_rounds_the_exact_quotient_half_even(
    numerator: str, denominator: str, places: int, expected: str
) -> None:
    quotient = rounded_quotient(Decimal(numerator), Decimal(denominator), places)

    assert quotient == Decimal(expected)
    assert quotient.as_tuple().exponent == -places  # as quantize's


def test_rounded_quotient_keeps_every_digit_beyond_the_default_precision() -> None:
    rng = random.Random(13)
    amounts = [Decimal(rng.randint(1, 10**38)).scaleb(-18) for _ in range(200)]
    with localcontext(EXACT):
        cost = sum((a * b for a, b in zip(amounts, reversed(amounts), strict=True)), Decimal(0))
        cases = [(cost, sum(amounts, Decimal(0)))]
        cases += [(a * b, a) for a, b in zip(amounts[::2], amounts[1::2], strict=True)]
    for numerator, denominator in cases:
        assert rounded_quotient(numerator, denominator, 8) == _half_even(numerator, denominator, 8)
    # The default context's (a / b).quantize rounded the quotient twice: the last place was off.
    top, bottom = Decimal("2.000000005000000000000000000001"), Decimal(1)
    assert (top / bottom).quantize(Decimal("1e-8")) == Decimal("2.00000000")
    assert rounded_quotient(top, bottom, 8) == Decimal("2.00000001")


def test_sums_and_values_beyond_the_default_precision_are_exact() -> None:
    big, tiny = Decimal("12345678901234567890.123456789012345678"), Decimal("0.000000000000000001")
    (holding,) = consolidate([_position(str(big), str(tiny)), _position(str(big), str(big))])

    with localcontext(EXACT):
        assert holding.quantity == big + big  # 39 digits
        assert holding.market_value == (big + big) * 2  # _position's last price
        assert holding.average_price == _half_even(big * tiny + big * big, big + big, 8)
    assert holding.quantity != big * 2  # the default context's sum: rounded to 28 digits
