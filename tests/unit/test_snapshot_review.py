"""The one rule that holds a snapshot for review, as the ledger applies it and the API predicts it."""

from __future__ import annotations

from shared.snapshot_review import SnapshotSource, hold_reason, suspicion

FIVE = [(f"S{i}", "NSE") for i in range(5)]


def test_an_empty_or_mostly_emptied_account_is_suspicious_and_names_who_said_so() -> None:
    assert suspicion(FIVE, []) == "the broker reported no holdings where the account held 5 instrument(s)"
    assert (
        suspicion(FIVE, FIVE[:2], source=SnapshotSource.STATEMENT)
        == "the statement lists 2 of the 5 instruments held before"
    )


def test_keeping_half_a_small_account_or_a_first_snapshot_is_not_suspicious() -> None:
    assert suspicion(FIVE, FIVE[:3]) is None, "3 of 5 is more than half"
    assert suspicion(FIVE[:3], FIVE[:1]) is None, "under four instruments only emptying counts"
    assert suspicion([], []) is None


def test_a_suspicious_snapshot_repeating_the_held_ones_instruments_is_applied() -> None:
    assert hold_reason(FIVE, FIVE[:1], FIVE[:1], source=SnapshotSource.STATEMENT) is None
    assert hold_reason(FIVE, FIVE[:1], FIVE[1:2], source=SnapshotSource.STATEMENT) is not None
    assert hold_reason(FIVE, FIVE[:1], None, source=SnapshotSource.STATEMENT) is not None
