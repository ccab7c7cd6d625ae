"""The ledger's tests on Postgres again, every batch's new rows going in by COPY, each table's in
pieces of two rows: in the other run (test_handlers_on_postgres.py) the tests' small batches go in
as one INSERT statement, and only a batch of more than `INSERT_AT_MOST` new rows takes COPY."""

import pytest

from services.ledger import store
from tests.unit.test_ledger import *  # noqa: F403


@pytest.fixture(autouse=True)
def every_batch_by_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "INSERT_AT_MOST", 0)
    monkeypatch.setattr(store, "COPY_PIECE_ROWS", 2)
