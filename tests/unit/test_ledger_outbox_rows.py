"""The ledger writes HoldingsChanged and CurrentHoldings to the outbox as JSON it builds itself, not
through the models: it must be byte for byte what the models write, whatever the values."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from services.ledger import announcements, current_holdings
from services.ledger.comparison import Hashed
from services.ledger.plan import BatchPlan
from services.ledger.positions import Held, HeldLike, InstrumentKey, QuantityChange
from shared import topics
from shared.events import CurrentHoldings, CurrentPosition, HoldingsChanged, PositionChange

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
TAKEN = datetime(2026, 11, 30, 17, 29, 59, tzinfo=timezone(timedelta(hours=5, minutes=30)))
ODD_SYMBOLS = ["TCS", 'A"B', "back\\slash", "tab\there", "ÄÖ株", "\x01ctl", "line\nbreak"]
NUMBERS = [Decimal(0), Decimal("100"), Decimal("-3.50"), Decimal("1E+2"), Decimal("1e-18"), Decimal("0.000")]


def _row_fields(row: tuple[object, ...]) -> dict[str, object]:
    return dict(zip(BatchPlan.OUTBOX_COLUMNS, row, strict=True))


@pytest.mark.parametrize("taken_at", [NOW, TAKEN])
def test_an_announcement_is_what_the_model_writes(taken_at: datetime) -> None:
    changes: list[QuantityChange] = [
        ((symbol, exchange), was, now)
        for symbol, exchange, was, now in zip(
            ODD_SYMBOLS, ["", "NSE", 'X"Y', "", "東証", "NSE", ""], NUMBERS, reversed(NUMBERS), strict=False
        )
    ]
    account_id, portfolio_id, snapshot_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    row = _row_fields(
        announcements.outbox_row(
            account_id=account_id,
            portfolio_id=portfolio_id,
            snapshot_id=snapshot_id,
            taken_at=taken_at,
            changes=changes,
            now=NOW,
        )
    )
    written = HoldingsChanged.model_validate_json(str(row["payload"]))
    model = HoldingsChanged(
        event_id=written.event_id,
        occurred_at=written.occurred_at,
        account_id=account_id,
        portfolio_id=portfolio_id,
        snapshot_id=snapshot_id,
        taken_at=taken_at,
        changes=tuple(
            PositionChange(symbol=key[0], exchange=key[1], previous_quantity=was, quantity=now)
            for key, was, now in changes
        ),
    )
    assert row["payload"] == model.model_dump_json()
    assert (row["event_id"], row["topic"], row["message_key"]) == (
        model.event_id,
        topics.HOLDINGS_CHANGES,
        model.key,
    )
    assert (row["created_at"], row["snapshot_id"]) == (NOW, snapshot_id)


def test_current_holdings_are_what_the_model_writes() -> None:
    positions: dict[InstrumentKey, HeldLike] = {
        (symbol, "NSE" if i % 2 else ""): Held(
            quantity=NUMBERS[i % len(NUMBERS)],
            average_price=NUMBERS[(i + 1) % len(NUMBERS)].copy_abs(),
            last_price=None if i % 3 == 0 else Decimal("1240.10"),
            currency="INR",
            isin=None,
            asset_type="equity",
        )
        for i, symbol in enumerate(reversed(ODD_SYMBOLS))
    }
    _assert_written_as_the_model(uuid.uuid4(), positions)


def _held(rng: random.Random) -> Held:
    return Held(
        quantity=rng.choice(NUMBERS),
        average_price=rng.choice(NUMBERS).copy_abs(),
        last_price=rng.choice([None, Decimal("1240.10"), Decimal("1240.1")]),
        currency=rng.choice(["INR", "USD"]),
        isin=None,
        asset_type="equity",
    )


@pytest.mark.parametrize("seed", range(60))
def test_an_accounts_successive_current_holdings_are_what_the_model_writes(seed: int) -> None:
    """A row's positions that are the very objects the positions before held are not written again
    but taken from the text written for those: whatever else changed (numbers written otherwise,
    positions closed, opened, in another order, an object under another instrument), each row is
    the model's."""
    rng = random.Random(seed)
    # One symbol holds what stands between two positions' JSON in the text a row is taken from.
    symbols = [*ODD_SYMBOLS, 'x,{"symbol":"y', *(f"S{i}" for i in range(8))]
    account_id = uuid.uuid4()
    positions: dict[InstrumentKey, HeldLike] = {}
    before = None
    for _ in range(30):
        step = rng.random()
        if step < 0.1:
            pass  # the same positions again
        elif step < 0.2 and positions:  # the same objects, one of them under another instrument
            keys = list(positions)
            keys[rng.randrange(len(keys))] = (rng.choice(symbols), "BSE")
            positions = dict(zip(keys, positions.values(), strict=True))
        else:
            later: dict[InstrumentKey, HeldLike] = {}
            for key, held in positions.items():
                kept = rng.random()
                if kept < 0.85:
                    later[key] = held
                elif kept < 0.95:
                    later[key] = _held(rng)  # maybe equal numbers, written otherwise
            for symbol in rng.sample(symbols, rng.randint(0, 2)):
                later.setdefault((symbol, rng.choice(["", "NSE"])), _held(rng))
            if rng.random() < 0.15:
                listed = list(later.items())
                rng.shuffle(listed)
                later = dict(listed)
            positions = later
        listed = current_holdings.listed(positions, before)
        _assert_written_as_the_model(account_id, positions, listed)
        before = Hashed(positions, "", listed if rng.random() < 0.9 else None)  # None: no row for them


def _assert_written_as_the_model(
    account_id: uuid.UUID, positions: dict[InstrumentKey, HeldLike], listed: str | None = None
) -> None:
    portfolio_id, snapshot_id = uuid.uuid4(), uuid.uuid4()
    row = _row_fields(
        current_holdings.outbox_row(
            account_id=account_id,
            portfolio_id=portfolio_id,
            snapshot_id=snapshot_id,
            as_of=TAKEN,
            positions=positions,
            now=NOW,
            listed=listed,
        )
    )
    written = CurrentHoldings.model_validate_json(str(row["payload"]))
    model = CurrentHoldings(
        event_id=written.event_id,
        occurred_at=written.occurred_at,
        account_id=account_id,
        portfolio_id=portfolio_id,
        snapshot_id=snapshot_id,
        as_of=TAKEN,
        positions=tuple(
            CurrentPosition(
                symbol=symbol,
                exchange=exchange,
                currency=held.currency,
                quantity=held.quantity,
                average_price=held.average_price,
                last_price=held.last_price,
            )
            for (symbol, exchange), held in sorted(positions.items())
        ),
    )
    assert row["payload"] == model.model_dump_json()
    assert (row["event_id"], row["topic"], row["message_key"]) == (
        model.event_id,
        topics.HOLDINGS_CURRENT,
        model.key,
    )
    assert (row["created_at"], row["snapshot_id"]) == (NOW, None)
