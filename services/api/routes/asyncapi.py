"""The AsyncAPI document of every topic (shared/schemas/asyncapi.json), public like the probes: what
a service subscribing to the stream reads first, no token needed."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.api.guard import GuardedRoute
from shared.schema_files import ASYNCAPI_FILE, SCHEMA_DIR

router = APIRouter(tags=["events"], route_class=GuardedRoute)


@router.get(
    "/asyncapi.json",
    summary="The AsyncAPI 3.0 document of the Kafka topics",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "An AsyncAPI 3.0.0 document."}},
)
async def asyncapi_document() -> Response:
    """Every topic as a channel (address, key, producers, consumer groups, retention or compaction),
    every message with its JSON Schema, and which service sends or receives what. Generated from the
    code by `make schemas`; docs/events.md explains it."""
    return Response((SCHEMA_DIR / ASYNCAPI_FILE).read_bytes(), media_type="application/json")
