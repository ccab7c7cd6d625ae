"""The consolidation rules on their own, without HTTP or a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from services.api.consolidation import Position, consolidate


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
