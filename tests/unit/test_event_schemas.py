from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.events import (
    EventDecodeError,
    Holding,
    HoldingsChanged,
    HoldingSnapshot,
    PositionChange,
    SyncRequested,
    SyncTrigger,
    decode_event,
)
from shared.schema_files import SCHEMA_DIR, rendered_files


def test_checked_in_schemas_match_the_models() -> None:
    """The event schemas and the AsyncAPI document (shared/asyncapi.py) alike."""
    for name, text in rendered_files().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run `make schemas`"
        assert path.read_text() == text, f"{name} drifted from the code: run `make schemas`"
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(rendered_files())


def test_money_and_quantities_travel_as_exact_decimal_strings() -> None:
    snapshot = decode_event(
        HoldingSnapshot,
        json.dumps(
            {
                "account_id": str(uuid.uuid4()),
                "request_id": str(uuid.uuid4()),
                "broker": "sim",
                "taken_at": "2026-01-02T03:04:05Z",
                "holdings": [
                    {"symbol": "X", "currency": "USD", "quantity": "0.10000001", "average_price": "19.99"}
                ],
            }
        ).encode(),
    )
    assert snapshot.holdings[0].quantity == Decimal("0.10000001")
    assert json.loads(snapshot.to_bytes())["holdings"][0]["average_price"] == "19.99"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"broker": "sim", "trigger": "manual"}', "account_id: Field required"),
        (b'{"account_id": "nope", "broker": "sim", "trigger": "manual"}', "account_id"),
        (
            b'{"account_id": "%s", "broker": "sim", "trigger": "weekly"}' % str(uuid.uuid4()).encode(),
            "trigger",
        ),
    ],
)
def test_malformed_events_raise_a_readable_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match="not a valid SyncRequested") as caught:
        decode_event(SyncRequested, raw)
    assert reason in str(caught.value)


def test_timestamps_must_carry_a_timezone() -> None:
    raw = b'{"account_id": "%s", "broker": "sim", "trigger": "manual", "occurred_at": "2026-01-01T00:00:00"}'
    with pytest.raises(EventDecodeError, match="occurred_at"):
        decode_event(SyncRequested, raw % str(uuid.uuid4()).encode())
    assert SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL).occurred_at.tzinfo


def _snapshot_json(quantity: str, *, trade_quantity: str = "1") -> bytes:
    holding = {"symbol": "X", "currency": "USD", "average_price": "1"}
    trade = {
        "trade_id": "t1",
        "symbol": "X",
        "side": "buy",
        "quantity": trade_quantity,
        "price": "1",
        "currency": "USD",
        "executed_at": "2026-01-02T03:00:00Z",
    }
    return json.dumps(
        {
            "account_id": str(uuid.uuid4()),
            "request_id": str(uuid.uuid4()),
            "broker": "sim",
            "taken_at": "2026-01-02T03:04:05Z",
            "holdings": [{**holding, "quantity": "1"}, {**holding, "quantity": quantity}],
            "trades": [trade],
        }
    ).encode()


@pytest.mark.parametrize(
    ("quantity", "trade_quantity", "reason"),
    [
        ("0.1234567890123456789", "1", "holdings.1.quantity: 0.1234567890123456789 has more than 18 decimal"),
        ("1e21", "1", "holdings.1.quantity: 1E+21 has more than 20 digits before the decimal point"),
        ("1", "1e-19", "trades.0.quantity: 1E-19 has more than 18 decimal places"),
    ],
)
def test_numbers_beyond_numeric_38_18_are_refused_with_their_place(
    quantity: str, trade_quantity: str, reason: str
) -> None:
    with pytest.raises(EventDecodeError, match="not a valid HoldingSnapshot") as caught:
        decode_event(HoldingSnapshot, _snapshot_json(quantity, trade_quantity=trade_quantity))
    assert reason in str(caught.value)


def test_long_numbers_that_fit_are_kept_exactly() -> None:
    decoded = decode_event(HoldingSnapshot, _snapshot_json("12345678901234567890.123456789012345678"))
    assert decoded.holdings[1].quantity == Decimal("12345678901234567890.123456789012345678")


def test_parts_built_in_python_check_their_own_numbers() -> None:
    """As adapters build holdings one by one, each says which of its numbers does not fit."""
    with pytest.raises(ValidationError, match=re.escape("quantity: 1E-20 has more than 18 decimal places")):
        PositionChange(symbol="X", exchange="", previous_quantity=Decimal(0), quantity=Decimal("1e-20"))
    with pytest.raises(ValidationError, match=re.escape("last_price: 1E+21 has more than 20 digits")):
        Holding(symbol="X", currency="USD", quantity=1, average_price=1, last_price=Decimal("1e21"))


def test_changes_announced_are_checked_when_decoded() -> None:
    changed = HoldingsChanged(
        account_id=uuid.uuid4(),
        portfolio_id=uuid.uuid4(),
        snapshot_id=uuid.uuid4(),
        taken_at=datetime.now(UTC),
        changes=(PositionChange(symbol="X", exchange="", previous_quantity=Decimal(0), quantity=Decimal(1)),),
    )
    raw = changed.to_bytes().replace(b'"quantity":"1"', b'"quantity":"1e-20"')
    with pytest.raises(EventDecodeError, match=re.escape("changes.0.quantity: 1E-20 has more than 18")):
        decode_event(HoldingsChanged, raw)


@pytest.mark.parametrize(
    ("holding", "reason"),
    [
        ({"quantity": "NaN"}, "holdings.1.quantity: NaN is not a finite number"),
        ({"quantity": "-Infinity"}, "holdings.1.quantity: -Infinity is not a finite number"),
        ({"average_price": "-0.01"}, "holdings.1.average_price: -0.01 should be greater than or equal to 0"),
        ({"last_price": "sNaN"}, "holdings.1.last_price: sNaN is not a finite number"),
        ({"last_price": "-5"}, "holdings.1.last_price: -5 should be greater than or equal to 0"),
    ],
)
def test_a_holdings_numbers_decoded_are_finite_and_its_prices_not_negative(
    holding: dict[str, str], reason: str
) -> None:
    """Checked by the snapshot for all its holdings at once, as they are decoded from JSON."""
    raw = json.loads(_snapshot_json("1"))
    raw["holdings"][1] |= holding
    with pytest.raises(EventDecodeError, match="not a valid HoldingSnapshot") as caught:
        decode_event(HoldingSnapshot, json.dumps(raw).encode())
    assert reason in str(caught.value)


def test_a_holding_may_be_short_and_priced_at_minus_zero() -> None:
    raw = json.loads(_snapshot_json("-3.5"))
    raw["holdings"][1] |= {"average_price": "-0", "last_price": "0.00"}
    decoded = decode_event(HoldingSnapshot, json.dumps(raw).encode())
    assert (decoded.holdings[1].quantity, decoded.holdings[1].average_price) == (Decimal("-3.5"), 0)


def test_a_holding_built_in_python_refuses_a_negative_price() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Holding(symbol="X", currency="USD", quantity=1, average_price=Decimal("-1"))
