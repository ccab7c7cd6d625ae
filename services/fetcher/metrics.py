"""The fetcher's Prometheus metrics, registered once per registry (the process's, unless a test
brings its own), on first use rather than at import."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter


class FetcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.unreadable_credentials = Counter(
            "portfolio_sync_fetcher_unreadable_credentials",
            "Sync requests whose credentials no configured key opens (an operator's key problem).",
            ["broker"],
            registry=registry,
        )


@functools.cache
def process_metrics() -> FetcherMetrics:
    """The metrics on the process's default registry, which the metrics endpoint serves."""
    return FetcherMetrics(REGISTRY)
