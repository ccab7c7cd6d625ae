"""The scheduler and ledger tests of the unit layer, run again on real Postgres.

Same tests, other database (as eventsourcing runs one recorder suite on every backend): here the
concurrent-scheduler test contends for real row locks, Decimal and timestamp columns go through
asyncpg's NUMERIC and TIMESTAMPTZ instead of SQLite's text, and a run's attempts and announcement go
in by COPY and set-based updates.
"""

from tests.unit.test_ledger import *  # noqa: F403
from tests.unit.test_migrations import *  # noqa: F403
from tests.unit.test_run_trace import *  # noqa: F403
from tests.unit.test_scheduler import *  # noqa: F403
from tests.unit.test_scheduler_kinds import *  # noqa: F403
