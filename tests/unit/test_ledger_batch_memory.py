"""What the ledger lets go of early, for its peak memory (one batch written while the next is
prepared): a batch's COPY text is made and sent in pieces, and the rows in it leave the plan."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from services.ledger import store
from services.ledger.handlers import _plan_and_encode
from services.ledger.plan import AccountState, plan_batch
from services.ledger.store import LedgerStore, _new_rows, _taken
from services.ledger.versions import PriceMemo
from shared.db.copy_text import copy_text
from shared.events import Holding, HoldingSnapshot, utc_now


def _postgres_store() -> LedgerStore:
    """A store that encodes as on Postgres; encoding itself touches no database."""
    postgres = SimpleNamespace(dialect=SimpleNamespace(name="postgresql"))
    return LedgerStore(SimpleNamespace(get_bind=lambda: postgres), consumer="ledger")  # type: ignore[arg-type]


def _first_snapshots(accounts: int) -> tuple[list[HoldingSnapshot], dict[uuid.UUID, AccountState]]:
    """New accounts' first snapshots of three holdings each: every one opens three positions."""
    states = {
        a: AccountState(
            id=a, portfolio_id=uuid.uuid4(), current_snapshot_id=None, positions_as_of=None, positions={}
        )
        for a in (uuid.uuid4() for _ in range(accounts))
    }
    taken_at = utc_now() - timedelta(minutes=5)
    events = [
        HoldingSnapshot(
            account_id=a,
            request_id=uuid.uuid4(),
            broker="sim",
            taken_at=taken_at,
            holdings=tuple(
                Holding(
                    symbol=s,
                    exchange="NSE",
                    currency="INR",
                    quantity=Decimal(10),
                    average_price=Decimal("9.5"),
                )
                for s in ("INFY", "TCS", "WIPRO")
            ),
        )
        for a in states
    ]
    return events, states


def test_a_tables_copy_text_comes_in_pieces_of_at_most_so_many_rows_that_together_are_the_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "INSERT_AT_MOST", 0)
    monkeypatch.setattr(store, "COPY_PIECE_ROWS", 4)
    events, accounts = _first_snapshots(3)
    plan = plan_batch(events, accounts, {}, consumer="ledger")
    whole = {model: copy_text(columns) for model, _, columns in _new_rows(plan, for_copy=True) if columns}

    encoded = _postgres_store().encode(plan)

    assert {model for model, _, _ in encoded} == whole.keys()
    for model, _, pieces in encoded:
        assert all(0 < piece.count(b"\n") <= 4 for piece in pieces)
        assert b"".join(pieces) == whole[model]
    versions = next(pieces for model, _, pieces in encoded if model.__tablename__ == "position_versions")
    assert len(versions) == 3  # nine versions: 4 + 4 + 1


async def test_pieces_are_taken_in_order_and_each_let_go_of_as_it_is_handed_out() -> None:
    pieces = [b"a\n", b"b\n", b"c\n"]
    handed = []
    async for piece in _taken(pieces):
        handed.append((piece, len(pieces)))
    assert handed == [(b"a\n", 2), (b"b\n", 1), (b"c\n", 0)]


def test_a_prepared_batch_keeps_only_what_its_write_reads_beside_the_copy_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "INSERT_AT_MOST", 0)
    events, accounts = _first_snapshots(2)

    plan, encoded = _plan_and_encode(_postgres_store(), events, accounts, {}, frozenset(), PriceMemo())

    assert encoded
    released = (plan.holdings, plan.versions, plan.derived, plan.processed, plan.attempts, plan.new_runs)
    assert released == ([], [], [], [], [], [])
    # The metrics count the snapshots, the relay publishes the outbox, the price memo learns the prices.
    assert len(plan.snapshots) == 2
    assert len(plan.outbox) == 4  # a HoldingsChanged and a CurrentHoldings each
    assert plan.prices
