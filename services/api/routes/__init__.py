"""One router per resource; each route parses input, calls storage, and shapes the response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str


_MEANINGS = {
    400: "A query the route cannot use (say, a cursor it did not hand out); the detail says why.",
    401: "Missing, unknown, revoked or expired API token.",
    403: "Not allowed: a `read` token on a route that writes, a non-operator on an admin route, or a "
    "sign-up the deployment's SIGNUP_MODE refuses; the detail says which.",
    404: "No such object among yours.",
    409: "Conflicts with the current state (a name taken, a per-user quota reached); the detail says how.",
    415: "The body is not in a media type the route reads; the detail says which it wants.",
    429: "Too many requests (per API token, or sign-ups per client address); retry after Retry-After "
    "seconds.",
    503: "A dependency (database or message bus) is unavailable; try again.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the errors a route can answer with."""
    return {code: _documented(code) for code in codes}


def _documented(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorOut, "description": _MEANINGS[code]}
    if code == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds until the limit's window ends.",
                "schema": {"type": "integer"},
            }
        }
    return response
