"""The holdings routes' fast path: on Postgres, a request whose id and `as_of` are valid is answered
by fast_reads.py, token check included, without FastAPI's dependencies (a session per dependency,
the ORM caller, the route's session); what is left of a request's cost is the framework's own.

Anything else takes the route as declared (GuardedRoute, then FastAPI's validation and the route
function): SQLite, where there is no fast path, and input FastAPI would refuse with a 422, so that
the refusal is FastAPI's own. The route functions stay the routes' documentation (OpenAPI) and
their SQLAlchemy path; the two paths' responses are the same bytes
(tests/integration/test_api_fast_reads_on_postgres.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request, Response, status
from pydantic import TypeAdapter, ValidationError

from services.api.deps import api_context
from services.api.fast_reads import FastReads
from services.api.guard import (
    TOKEN_WINDOW,
    GuardedRoute,
    bearer_secret,
    invalid_token,
    missing_token,
    too_many_requests,
)
from services.api.holdings_json_sql import NOTHING_HELD
from services.api.input_types import Timestamp
from services.api.storage_users import secret_hash
from shared.events import utc_now

_ID = TypeAdapter(uuid.UUID)
_AS_OF = TypeAdapter(Timestamp)


class FastHoldingsRoute(GuardedRoute):
    """A holdings route (`{account_id}` or `{portfolio_id}` in its path) with the fast path before it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.whole_portfolio = "{portfolio_id}" in path
        self.scope_param = "portfolio_id" if self.whole_portfolio else "account_id"
        if "{" + self.scope_param + "}" not in path:
            raise TypeError(f"{path}: a holdings route names an account_id or a portfolio_id")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def fast_or_declared(request: Request) -> Response:
            reads = api_context(request).resources.fast_reads
            if reads is None:
                return await declared(request)
            try:
                scope_id = _ID.validate_python(request.path_params[self.scope_param])
                as_of_text = request.query_params.get("as_of")
                as_of = None if as_of_text is None else _AS_OF.validate_python(as_of_text)
            except ValidationError:
                return await declared(request)  # FastAPI's 422, after the guard's checks
            return await self._read(request, reads, scope_id, as_of)

        return fast_or_declared

    async def _read(
        self, request: Request, reads: FastReads, scope_id: uuid.UUID, as_of: datetime | None
    ) -> Response:
        """GuardedRoute's checks for a read (a read is in every token's scope) and the route's read."""
        secret = bearer_secret(request)
        if secret is None:
            return missing_token()
        limit = api_context(request).settings.token_rate_limit_per_minute
        now = utc_now()
        async with reads.connection() as connection:
            found = await reads.read(
                connection,
                secret_hash(secret),
                now=now,
                window=TOKEN_WINDOW if limit else None,
                scope_id=scope_id,
                at=as_of,
                whole_portfolio=self.whole_portfolio,
            )
            if found is None:
                return invalid_token()
            token, body = found
            await reads.note_token_use(connection, token, now=now)
            if token.count is not None and token.count.hits > limit:
                return too_many_requests(token.count, now)
            owned = body != NOTHING_HELD or await reads.owns(
                connection, owner_id=token.user_id, scope_id=scope_id, whole_portfolio=self.whole_portfolio
            )
        if not owned:
            # As the route's owned_account / owned_portfolio: nothing held, or not the caller's.
            what = "portfolio" if self.whole_portfolio else "account"
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
        return Response(body.encode(), media_type="application/json")
