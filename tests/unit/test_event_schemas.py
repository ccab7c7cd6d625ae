from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from shared.events import EventDecodeError, HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from shared.schema_files import SCHEMA_DIR, rendered_schemas


def test_checked_in_schemas_match_the_models() -> None:
    for name, text in rendered_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run `make schemas`"
        assert path.read_text() == text, f"{name} drifted from shared/events.py: run `make schemas`"
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(rendered_schemas())


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
