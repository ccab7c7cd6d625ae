"""One router per resource; each route parses input, calls storage, and shapes the response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str


_MEANINGS = {
    400: "A request the route cannot use: a body that is not UTF-8 JSON, or a query it cannot use "
    "(say, a cursor it did not hand out); the detail says why.",
    401: "Missing, unknown, revoked or expired API token.",
    403: "Not allowed: a `read` token on a route that writes, a non-operator on an admin route, or a "
    "sign-up the deployment's SIGNUP_MODE refuses; the detail says which.",
    404: "No such object among yours.",
    409: "Conflicts with the current state (a name taken, a per-user quota reached); the detail says how.",
    413: "The request body is larger than the route takes (API_MAX_BODY_BYTES; 5 MB for statements).",
    415: "The body is not in a media type the route reads; the detail says which it wants.",
    429: "Too many requests (per API token, or sign-ups per client address); retry after Retry-After "
    "seconds.",
    503: "A dependency (database or message bus) is unavailable; try again after `Retry-After` seconds.",
}


BODY_ERRORS = (400, 413)
"""What any route that reads a body can also answer: an unreadable body, a body too large."""


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
