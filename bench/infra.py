"""A Kafka broker for a benchmark run: the one named by KAFKA_BOOTSTRAP_SERVERS, else a local one."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.infra import KafkaService, provide_kafka  # noqa: E402

__all__ = ["KafkaService", "provide_kafka"]
