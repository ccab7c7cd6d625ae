"""Kafka and Postgres for a benchmark run: the ones named by KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL,
else local ones started for the run (as the tests do) and stopped after it."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.infra import KafkaService, PostgresService, provide_kafka, provide_postgres  # noqa: E402

__all__ = ["REPO", "KafkaService", "PostgresService", "provide_kafka", "provide_postgres"]
