"""One router per resource; each route parses input, calls storage, and shapes the response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str


_MEANINGS = {
    400: "A request the route cannot use: a body that is not UTF-8 JSON, or a query it cannot use "
    "(say, a cursor it did not hand out); the detail says why.",
    401: "Missing or invalid API token.",
    404: "No such object among yours.",
    409: "Conflicts with the current state; the detail says how.",
    413: "The request body is larger than the route takes (API_MAX_BODY_BYTES; 5 MB for statements).",
    415: "The body is not in a media type the route reads; the detail says which it wants.",
    503: "A dependency (database or message bus) is unavailable; try again after `Retry-After` seconds.",
}


BODY_ERRORS = (400, 413)
"""What any route that reads a body can also answer: an unreadable body, a body too large."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the errors a route can answer with."""
    return {code: {"model": ErrorOut, "description": _MEANINGS[code]} for code in codes}
