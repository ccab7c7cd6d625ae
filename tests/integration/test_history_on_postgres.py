"""History as versions on real Postgres: migration 0014 moving old-layout history, and the retention
of unchanged snapshots (the unit layer's tests)."""

from tests.unit.test_history_migration import (  # noqa: F401  (run again here)
    test_history_moves_into_versions_and_reads_as_before,
)
from tests.unit.test_snapshot_retention import (  # noqa: F401  (run again here)
    test_unchanged_snapshots_past_the_retention_go_and_as_of_reads_keep_their_positions,
)
