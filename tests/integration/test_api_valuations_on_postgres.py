"""The valuations route's tests of the unit layer, run again on real Postgres: its slices are computed
by a dialect-specific expression (EXTRACT(EPOCH ...) here, julianday on SQLite), and its sums are
exact NUMERIC here."""

from tests.unit.api.conftest import (  # noqa: F401  (fixtures)
    account_id,
    alice,
    bob,
    cipher,
    client,
    ledger,
    portfolio_id,
    responses,
    settings,
)
from tests.unit.api.test_api_valuations import *  # noqa: F403
