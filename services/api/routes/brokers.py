"""The broker types this deployment can sync: what an account's `broker` may be."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import BrokerTypes, CurrentUser
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import BrokerLimitsOut, BrokerTypeOut

router = APIRouter(tags=["brokers"], route_class=GuardedRoute)


@router.get(
    "/brokers", summary="List the brokers accounts can be synced from", responses=error_responses(401)
)
async def list_brokers(user: CurrentUser, known: BrokerTypes) -> list[BrokerTypeOut]:
    """Every broker code an account may name: the installed adapters (the simulated broker `sim`
    included) and `csv`, whose accounts hold uploaded statements. For each, the credential fields
    its accounts must set and the broker's documented request limits."""
    return [
        BrokerTypeOut(
            code=t.code,
            name=t.name,
            credential_fields=list(t.credential_fields),
            optional_credential_fields=list(t.optional_credential_fields),
            limits=None if t.limits is None else BrokerLimitsOut.model_validate(t.limits.model_dump()),
            doc_url=t.doc_url,
            sync="schedule" if t.fetched else "statement",
        )
        for t in known.values()
    ]
