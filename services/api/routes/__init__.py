"""One router per resource; each route parses input, calls storage, and shapes the response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    detail: str


_MEANINGS = {
    400: "A query the route cannot use (say, a cursor it did not hand out); the detail says why.",
    401: "Missing or invalid API token.",
    404: "No such object among yours.",
    409: "Conflicts with the current state; the detail says how.",
    415: "The body is not in a media type the route reads; the detail says which it wants.",
    503: "A dependency (database or message bus) is unavailable; try again.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the errors a route can answer with."""
    return {code: {"model": ErrorOut, "description": _MEANINGS[code]} for code in codes}
