"""What a replay's correction derives again (`services/ledger/rederivation.py`), without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.ledger.positions import Positions, positions_of
from services.ledger.rederivation import Link, ReportedTrade, StoredTrade, moves_to_redo, rederive
from shared.events import Holding, PositionChange

START = datetime(2026, 11, 30, 9, tzinfo=UTC)


def _tcs(quantity: int, *, isin: str | None = None) -> Positions:
    holding = Holding(
        symbol="TCS",
        exchange="NSE",
        isin=isin,
        currency="INR",
        quantity=Decimal(quantity),
        average_price=Decimal(100),
        last_price=Decimal(110),
    )
    return positions_of([holding])


def test_a_correction_touches_the_move_into_its_snapshot_and_out_of_it() -> None:
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    assert moves_to_redo([a, b, c, d], {b}) == [(a, b), (b, c)]
    assert moves_to_redo([a, b, c, d], {a, b}) == [(None, a), (a, b), (b, c)]
    assert moves_to_redo([a, b, c, d], {d}) == [(c, d)]
    # A snapshot of the batch itself was derived from the corrected positions already.
    assert moves_to_redo([a, b, c, d], {b}, fresh={c}) == [(a, b)]


def test_a_misread_sale_corrected_moves_the_next_sale_into_its_row_and_announces_both() -> None:
    account, portfolio = uuid.uuid4(), uuid.uuid4()
    before = Link(uuid.uuid4(), START, _tcs(10))
    misread = Link(uuid.uuid4(), START + timedelta(hours=1), _tcs(7))  # really still 10
    after = Link(uuid.uuid4(), START + timedelta(hours=2), _tcs(4))
    sold_3, sold_3_again = uuid.uuid4(), uuid.uuid4()
    stored = {
        misread.snapshot_id: [
            StoredTrade(sold_3, ("TCS", "NSE"), ("sell", Decimal(3), Decimal(110), "last_price", "INR"))
        ],
        after.snapshot_id: [
            StoredTrade(sold_3_again, ("TCS", "NSE"), ("sell", Decimal(3), Decimal(110), "last_price", "INR"))
        ],
    }
    rederived = rederive(
        account_id=account,
        portfolio_id=portfolio,
        moves=[(before, misread), (misread, after)],
        corrected={misread.snapshot_id: _tcs(10)},
        stored=stored,
        reported=[],
    )
    assert rederived.deleted == [sold_3]  # nothing was sold then
    assert rederived.updated == [  # the later sale was of 6, in the same row
        {
            "id": sold_3_again,
            "kind": "sell",
            "quantity": Decimal(6),
            "price": Decimal(110),
            "price_source": "last_price",
            "currency": "INR",
        }
    ]
    assert rederived.inserted == []
    first, second = rederived.announcements
    assert (first.snapshot_id, first.changes, first.correction) == (misread.snapshot_id, (), True)
    assert second.changes == (
        PositionChange(symbol="TCS", exchange="NSE", previous_quantity=Decimal(10), quantity=Decimal(4)),
    )


def test_a_correction_that_changes_no_trade_changes_no_row_and_announces_nothing() -> None:
    before = Link(uuid.uuid4(), START, _tcs(10))
    snapshot = Link(uuid.uuid4(), START + timedelta(hours=1), _tcs(12))
    rederived = rederive(
        account_id=uuid.uuid4(),
        portfolio_id=uuid.uuid4(),
        moves=[(before, snapshot)],
        corrected={snapshot.snapshot_id: _tcs(12, isin="INE467B01029")},
        stored={},
        reported=[],
    )
    assert (rederived.inserted, rederived.updated, rederived.deleted, rederived.announcements) == (
        [],
        [],
        [],
        [],
    )


def test_a_reported_trade_is_netted_out_of_the_corrected_move() -> None:
    before = Link(uuid.uuid4(), START, _tcs(10))
    snapshot = Link(uuid.uuid4(), START + timedelta(hours=1), _tcs(10))  # misread: really 15
    reported = [ReportedTrade(("TCS", "NSE"), START + timedelta(minutes=30), Decimal(2))]
    rederived = rederive(
        account_id=uuid.uuid4(),
        portfolio_id=uuid.uuid4(),
        moves=[(before, snapshot)],
        corrected={snapshot.snapshot_id: _tcs(15)},
        stored={},
        reported=reported,
    )
    [row] = rederived.inserted
    assert row[1:5] == ("TCS", "NSE", "buy", Decimal(3))  # 5 more, 2 of them reported
