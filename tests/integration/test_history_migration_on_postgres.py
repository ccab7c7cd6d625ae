"""Migration 0014 moving old-layout history into versions, on real Postgres (the unit layer's test)."""

from tests.unit.test_history_migration import (  # noqa: F401  (run again here)
    test_history_moves_into_versions_and_reads_as_before,
)
