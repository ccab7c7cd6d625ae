"""Checks that run before a route reads its body: the API token, its scope, and rate limits.

FastAPI parses a body before it resolves dependencies, so a dependency cannot refuse a request
before its body is read. `GuardedRoute` can: every route of the API uses it, and a route that
depends on `current_user` (directly or through another dependency) is authenticated before anything
else; one that depends on `limit_sign_ups` is counted against its client address. The caller is
left in `request.state` for `current_user`, so the token is looked up once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param

from services.api import storage_callers, storage_limits, storage_users
from services.api.deps import CALLER_STATE, api_context, current_user, limit_sign_ups
from services.api.routes import BODY_ERRORS, error_responses
from shared.events import utc_now
from shared.settings import Settings

READ_METHODS = frozenset({"GET", "HEAD"})
TOKEN_WINDOW = timedelta(minutes=1)
SIGN_UP_WINDOW = timedelta(hours=1)


class GuardedRoute(APIRoute):
    """An APIRoute that authenticates and rate-limits before its body is parsed."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        calls = _dependency_calls(path, endpoint, kwargs.get("dependencies") or [])
        self.authenticates = current_user in calls
        self.limits_sign_ups = limit_sign_ups in calls
        methods = {m.upper() for m in kwargs.get("methods") or ["GET"]}
        codes = [401, 429] if self.authenticates else [429] if self.limits_sign_ups else []
        if self.authenticates and not methods <= READ_METHODS:
            codes.append(403)
        if get_dependant(path=path, call=endpoint).body_params:
            codes += BODY_ERRORS  # a body that is not JSON, or too large (body_cap.py)
        # Documented on every route the guard (or the body cap) can refuse, so no route can forget them.
        kwargs["responses"] = {**error_responses(*codes), **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            refusal = await self._refusal(request)
            return refusal if refusal is not None else await handler(request)

        return guarded

    async def _refusal(self, request: Request) -> Response | None:
        if not (self.authenticates or self.limits_sign_ups):
            return None
        context = api_context(request)
        settings, now = context.settings, utc_now()
        # Each statement below is atomic by itself (a lookup, an upsert counting one hit): no
        # transaction to begin and end around them, two round trips fewer per request.
        async with context.reads() as session:
            if self.limits_sign_ups and settings.signup_rate_limit_per_hour:
                key = f"sign-up:{client_address(request, settings)}"
                count = await storage_limits.count_hit(session, key, window=SIGN_UP_WINDOW, now=now)
                await session.commit()
                if count.hits > settings.signup_rate_limit_per_hour:
                    return _too_many(count, now, "too many sign-ups from your address")
            if not self.authenticates:
                return None
            secret = bearer_secret(request)
            if secret is None:
                return missing_token()
            limit = settings.token_rate_limit_per_minute
            authenticated = await storage_callers.authenticate(
                session,
                storage_users.secret_hash(secret),
                now=now,
                window=TOKEN_WINDOW if limit else None,
                writes=request.method not in READ_METHODS,
            )
            if authenticated is None:
                return invalid_token()
            caller = authenticated.caller
            if not storage_callers.may_send(caller.token.scope, writes=request.method not in READ_METHODS):
                return JSONResponse(
                    {"detail": f"this API token's scope is {caller.token.scope!r}: it may only read (GET)"},
                    status_code=403,
                    headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="write"'},
                )
            await storage_users.note_token_use(session, caller.token, now=now)
            await session.commit()
            if authenticated.count is not None and authenticated.count.hits > limit:
                return too_many_requests(authenticated.count, now)
        setattr(request.state, CALLER_STATE, caller)
        return None


def client_address(request: Request, settings: Settings) -> str:
    """The client's address: the socket peer, unless that is a trusted proxy (API_TRUSTED_PROXIES);
    then the nearest X-Forwarded-For hop that is not one. Only trusted proxies' headers count, so a
    client cannot pick the address its sign-ups are counted under."""
    peer = request.client.host if request.client else "unknown"
    trusted = settings.trusted_proxy_networks
    if not trusted or not _is_in(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_in(hop, trusted):
            return hop[:64]
    return hops[0][:64] if hops else peer


def _is_in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _dependency_calls(path: str, endpoint: Callable[..., Any], dependencies: list[Any]) -> set[Any]:
    dependants: list[Dependant] = [get_dependant(path=path, call=endpoint)]
    dependants += [get_dependant(path=path, call=d.dependency) for d in dependencies if d.dependency]
    calls: set[Any] = set()
    while dependants:
        dependant = dependants.pop()
        calls.add(dependant.call)
        dependants.extend(dependant.dependencies)
    return calls


def bearer_secret(request: Request) -> str | None:
    scheme, secret = get_authorization_scheme_param(request.headers.get("Authorization"))
    return secret if scheme.lower() == "bearer" and secret else None


def missing_token() -> JSONResponse:
    return _unauthorized("missing API token: send `Authorization: Bearer <api_token>`", "Bearer")


def invalid_token() -> JSONResponse:
    return _unauthorized("invalid API token (unknown, revoked or expired)", 'Bearer error="invalid_token"')


def too_many_requests(count: storage_limits.WindowCount, now: datetime) -> JSONResponse:
    return _too_many(count, now, "too many requests with this API token")


def _unauthorized(detail: str, challenge: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": challenge})


def _too_many(count: storage_limits.WindowCount, now: datetime, what: str) -> JSONResponse:
    retry_after = count.retry_after_seconds(now)
    return JSONResponse(
        {"detail": f"{what}: try again in {retry_after} s"},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )
