"""The webhook delivery service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

ATTEMPTS = Counter(
    "portfolio_sync_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered (a 2xx) or failed (anything else, a refused "
    "address, a redirect or a timeout included).",
    ["outcome"],
)
GIVEN_UP = Counter(
    "portfolio_sync_webhook_deliveries_given_up_total",
    "Webhook deliveries that failed their last retry.",
)
ENDPOINTS_DISABLED = Counter(
    "portfolio_sync_webhook_endpoints_disabled_total",
    "Webhook endpoints disabled after WEBHOOKS_DISABLE_AFTER_FAILURES failed attempts in a row.",
)
