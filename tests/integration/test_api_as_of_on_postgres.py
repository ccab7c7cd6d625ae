"""The as-of holdings tests of the unit layer, run again on real Postgres: here the snapshot of each
account is picked by a LATERAL join (storage_history; SQLite picks it by a correlated subquery), and
these are the histories with every status, a late snapshot sharing its instant with an applied one,
and another owner's accounts."""

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
from tests.unit.api.test_api_as_of_holdings import *  # noqa: F403
from tests.unit.api.test_api_as_of_owner import *  # noqa: F403
