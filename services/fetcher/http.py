"""HTTP plumbing shared by the broker adapters: limits on every request, and the failures every
broker has in common (network errors, 429, 5xx) turned into typed errors."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import httpx

from services.fetcher.adapter import RateLimited, TransientBrokerError
from services.fetcher.limits import BrokerLimiter
from services.fetcher.metrics import process_metrics
from shared.metrics import status_class

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_SENT_AT = "portfolio_sync.sent_at"  # request extension: when the request got its rate-limit token


def broker_client(
    base_url: str, limiter: BrokerLimiter, *, headers: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    """An HTTP client whose every request first takes a token from the broker's rate bucket."""

    waited = process_metrics().rate_limit_wait.labels(broker=limiter.broker)

    async def take_token(request: httpx.Request) -> None:
        started = time.perf_counter()
        await limiter.requests.acquire()
        sent = time.perf_counter()
        waited.observe(sent - started)
        request.extensions[_SENT_AT] = sent  # `send` times the request from here, not the wait

    return httpx.AsyncClient(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=DEFAULT_TIMEOUT,
        event_hooks={"request": [take_token]},
        limits=httpx.Limits(max_connections=limiter.limits.concurrency * 2),
    )


Inspector = Callable[[httpx.Response], Awaitable[None]]


async def send(
    client: httpx.AsyncClient, request: httpx.Request, *, broker: str, inspect: Inspector | None = None
) -> httpx.Response:
    """Send; raise TransientBrokerError or RateLimited for the failures common to every broker.

    `inspect`, when given, sees the response first and may raise: for a broker whose own body or
    headers say more than the status (an error code under any status, its own rate-limit header).
    The caller maps its broker's own auth and error bodies; everything else passes through.
    """
    started = time.perf_counter()
    try:
        response = await client.send(request)
    except httpx.TimeoutException as exc:
        _observe(request, broker, "timeout", started)
        raise TransientBrokerError(f"{broker}: no answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        _observe(request, broker, "connection_error", started)
        raise TransientBrokerError(f"{broker}: connection failed ({type(exc).__name__}: {exc})") from exc
    _observe(request, broker, status_class(response.status_code), started)
    if inspect is not None:
        await inspect(response)
    if response.status_code == 429:
        raise RateLimited(
            f"{broker}: rate limited (HTTP 429)", retry_after_s=retry_after_seconds(response.headers)
        )
    if response.status_code >= 500:
        raise TransientBrokerError(f"{broker}: server error HTTP {response.status_code}")
    return response


def _observe(request: httpx.Request, broker: str, outcome: str, started: float) -> None:
    sent = request.extensions.get(_SENT_AT, started)
    process_metrics().http_requests.labels(broker=broker, status_class=outcome).observe(
        time.perf_counter() - sent
    )


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def decimal_json(content: bytes) -> Any:
    """Strict JSON with every fraction a Decimal, so no price passes through a float; NaN and
    Infinity refused. Raises ValueError for anything else (JSONDecodeError and UnicodeDecodeError
    are ValueErrors); the adapter says what that means for its broker."""
    return json.loads(content, parse_float=Decimal, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")
