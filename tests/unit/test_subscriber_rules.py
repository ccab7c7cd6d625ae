"""The examples' rules (examples/subscribers/positions.py): read in any interleaving of the two topics
(each topic in its own order, as Kafka gives one account's records), they end at the account's
latest positions; a removal ends with the account gone."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import timedelta
from decimal import Decimal

from examples.subscribers.positions import State, on_change, on_current
from shared.events import CurrentHoldings, CurrentPosition, HoldingsChanged, PositionChange, utc_now

ACCOUNT, PORTFOLIO = uuid.uuid4(), uuid.uuid4()
T0 = utc_now()


def _current(minute: int, **quantities: int) -> bytes:
    return CurrentHoldings(
        account_id=ACCOUNT,
        portfolio_id=PORTFOLIO,
        snapshot_id=uuid.uuid4(),
        as_of=T0 + timedelta(minutes=minute),
        positions=tuple(
            CurrentPosition(
                symbol=s, exchange="NSE", currency="INR", quantity=Decimal(q), average_price=Decimal(1)
            )
            for s, q in quantities.items()
        ),
    ).to_bytes()


def _change(minute: int, *, correction: bool = False, **moves: tuple[int, int]) -> bytes:
    return HoldingsChanged(
        correction=correction,
        account_id=ACCOUNT,
        portfolio_id=PORTFOLIO,
        snapshot_id=uuid.uuid4(),
        taken_at=T0 + timedelta(minutes=minute),
        changes=tuple(
            PositionChange(symbol=s, exchange="NSE", previous_quantity=Decimal(was), quantity=Decimal(now))
            for s, (was, now) in moves.items()
        ),
    ).to_bytes()


# Three changes as the ledger writes them: each on holdings.changes, and the positions after it on
# holdings.current.
CHANGES = [_change(1, TCS=(0, 10)), _change(2, INFY=(0, 5)), _change(3, TCS=(10, 0), WIPRO=(0, 2))]
CURRENT = [_current(1, TCS=10), _current(2, TCS=10, INFY=5), _current(3, INFY=5, WIPRO=2)]


def _interleavings(a: list[bytes], b: list[bytes]) -> list[list[tuple[str, bytes]]]:
    """Every merge of `a` (holdings.current) and `b` (holdings.changes) keeping each one's order."""
    merged = []
    for places in itertools.combinations(range(len(a) + len(b)), len(a)):
        ai, bi = iter(a), iter(b)
        merged.append(
            [("current", next(ai)) if i in places else ("changes", next(bi)) for i in range(len(a) + len(b))]
        )
    return merged


def _read(records: list[tuple[str, bytes]], state: State | None = None) -> State | None:
    for topic, value in records:
        state = on_current(state, value) if topic == "current" else on_change(state, value)
    return state


def test_any_interleaving_of_the_two_topics_ends_at_the_latest_positions() -> None:
    orders = _interleavings(CURRENT, CHANGES)
    assert len(orders) == 20
    for records in orders:
        state = _read(records)
        assert state is not None and state["positions"] == {"INFY@NSE": "5", "WIPRO@NSE": "2"}, records


def test_a_bootstrap_from_the_compacted_topic_then_the_later_changes_and_a_redelivery() -> None:
    bootstrapped = on_current(None, CURRENT[1])  # compaction kept the latest at the time
    state = _read([("changes", CHANGES[1]), ("changes", CHANGES[2]), ("changes", CHANGES[2])], bootstrapped)
    assert state is not None and state["positions"] == {"INFY@NSE": "5", "WIPRO@NSE": "2"}


def test_a_replays_corrections_in_any_interleaving_end_at_the_corrected_positions() -> None:
    # Two syncs misread 10 TCS as 7; the second changed nothing, so only the first was announced.
    # The replay announces what the first changed after all, and the corrected current positions.
    changes = [_change(1, TCS=(0, 7)), _change(1, correction=True, TCS=(0, 10))]
    current = [_current(1, TCS=7), _current(2, TCS=10)]
    for records in _interleavings(current, changes):
        state = _read(records)
        assert state is not None and state["positions"] == {"TCS@NSE": "10"}, records


def test_a_removal_on_either_topic_forgets_the_account_and_unknown_events_are_skipped() -> None:
    state = on_current(None, CURRENT[2])
    unknown = json.dumps({"event_type": "something_new", "account_id": str(ACCOUNT)}).encode()
    assert on_change(state, unknown) == state
    removed = json.dumps({"event_type": "account_removed", "account_id": str(ACCOUNT)}).encode()
    assert on_change(state, removed) is None
    assert on_current(state, None) is None
    assert on_current(state, b"") is None
