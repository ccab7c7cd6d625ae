"""The fetcher's Prometheus metrics, registered once per registry (the process's, unless a test
brings its own), on first use rather than at import. Labels: broker codes, outcomes and failure
kinds, HTTP status classes — all bounded."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Broker answers take tens of milliseconds to several seconds (timeouts at 10 s).
_HTTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Waiting for a rate-limit token: nothing at all, usually; seconds when a broker's bucket is empty.
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class FetcherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.unreadable_credentials = Counter(
            "portfolio_sync_fetcher_unreadable_credentials",
            "Sync requests whose credentials no configured key opens (an operator's key problem).",
            ["broker"],
            registry=registry,
        )
        self.syncs = Counter(
            "portfolio_sync_fetcher_syncs_total",
            "Sync attempts by outcome: succeeded, or the failure kind (auth, transient, rate_limited, "
            "invalid_response, unreadable_credentials).",
            ["broker", "outcome"],
            registry=registry,
        )
        self.sync_duration = Histogram(
            "portfolio_sync_fetcher_sync_duration_seconds",
            "Time one sync attempt took, from taking a concurrency slot to the snapshot or failure.",
            ["broker"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )
        self.raw_answers = Counter(
            "portfolio_sync_fetcher_raw_answers_total",
            "Broker answers handed to the raw archive, by outcome: kept, or failed (the archive did "
            "not take them; the syncs went on).",
            ["broker", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "portfolio_sync_fetcher_retries_scheduled_total",
            "Failed attempts sent back to sync.requests.<broker>.retry to be tried again later.",
            ["broker", "kind"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "portfolio_sync_fetcher_in_flight",
            "Accounts this fetcher is fetching right now (holding a concurrency slot).",
            ["broker"],
            registry=registry,
        )
        self.http_requests = Histogram(
            "portfolio_sync_broker_http_request_duration_seconds",
            "Requests to a broker's API and how long each took to answer (after its rate-limit token), "
            "by status class (2xx, 4xx, 5xx) or `timeout` / `connection_error`.",
            ["broker", "status_class"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )
        self.rate_limit_wait = Histogram(
            "portfolio_sync_fetcher_rate_limit_wait_seconds",
            "Time a request to a broker waited for a token of the broker's rate limit.",
            ["broker"],
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )


@functools.cache
def process_metrics() -> FetcherMetrics:
    """The metrics on the process's default registry, which the metrics endpoint serves."""
    return FetcherMetrics(REGISTRY)
