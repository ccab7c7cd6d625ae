"""The API's lifecycle, paging and isolation tests of the unit layer, and the operator's counts per
broker (conditional sums over timestamps), run again on real Postgres.

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
from tests.unit.api.test_api_admin_operations import (  # noqa: F401  (the counts per broker, on Postgres)
    operator,
    test_outcomes_per_broker_hour_by_hour,
    test_sync_runs_by_status_and_counts_per_broker,
)
from tests.unit.api.test_api_isolation_by_openapi import *  # noqa: F403
from tests.unit.api.test_api_lifecycle import *  # noqa: F403
from tests.unit.api.test_api_paging import *  # noqa: F403
