"""The API's lifecycle, paging and isolation tests of the unit layer, run again on real Postgres.

Here deletion goes through Postgres's own ON DELETE CASCADE and row locks, and the count of every
table's rows for the removed objects (`rows_left`) is taken on the database production runs.
"""

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
from tests.unit.api.test_api_isolation_by_openapi import *  # noqa: F403
from tests.unit.api.test_api_lifecycle import *  # noqa: F403
from tests.unit.api.test_api_paging import *  # noqa: F403
