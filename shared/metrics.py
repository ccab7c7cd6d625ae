"""Prometheus metrics every service shares (the consume loop's), and the server that exposes them.

Metrics live on prometheus_client's process-wide registry, each declared once in the module named
for what it measures (this one, `services/<name>/metrics.py`), so the demo, which runs all four
services in one process, registers each exactly once. Labels are bounded: broker codes, outcomes,
kinds, topics, consumer groups, partitions and route templates; never an account, user or symbol.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server

from shared.settings import Settings

CONSUMER_LAG = Gauge(
    "portfolio_sync_consumer_lag_records",
    "Records of a partition this consumer holds that it has not fetched yet (log end - position).",
    ["group", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "portfolio_sync_dead_letters_total",
    "Records a consumer could not process and parked on <topic>.dlq, by original topic.",
    ["topic", "group"],
)
CONSUMED_RECORDS = Counter(
    "portfolio_sync_consumed_records_total",
    "Records a consumer handled and committed (dead-lettered ones included).",
    ["group"],
)
SYNC_REQUESTS = Counter(
    "portfolio_sync_sync_requests_total",
    "SyncRequested events published, by broker and trigger (schedule, manual, ...).",
    ["broker", "trigger"],
)


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ...: a bounded label for an HTTP status."""
    return f"{status // 100}xx"


@contextmanager
def metrics_server(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> Iterator[int]:
    """Serve `registry` at http://host:port/metrics (any path, in fact) from a daemon thread; yield
    the port bound (`port` 0: any free one). The scrape runs in that thread, never on the event loop."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def metrics_served(settings: Settings) -> Iterator[int | None]:
    """The process's metrics on METRICS_HOST:METRICS_PORT while the context lasts; nothing when
    METRICS_PORT is 0. Yields the port bound, or None."""
    if settings.metrics_port == 0:
        yield None
        return
    with metrics_server(settings.metrics_host, settings.metrics_port) as port:
        yield port
