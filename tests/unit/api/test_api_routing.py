"""The holdings routes are tried first (services/api/app.py): that must change no answer and no
document. No other route matches their paths, and the schema lists them once, in v1's order."""

from __future__ import annotations

import uuid

from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path

from services.api import create_app
from services.api.app import api_routes
from shared.settings import Settings

ACCOUNT_HOLDINGS = "/v1/accounts/{account_id}/holdings"
PORTFOLIO_HOLDINGS = "/v1/portfolios/{portfolio_id}/holdings"


def test_no_other_route_matches_the_holdings_paths() -> None:
    app = create_app(Settings(credentials_keys="x"))
    templates = {c.path_format for c in iter_route_contexts(app.routes) if c.path_format}
    for template, path in (
        (ACCOUNT_HOLDINGS, f"/v1/accounts/{uuid.uuid4()}/holdings"),
        (PORTFOLIO_HOLDINGS, f"/v1/portfolios/{uuid.uuid4()}/holdings"),
        (ACCOUNT_HOLDINGS, "/v1/accounts/not-an-id/holdings"),  # FastAPI's 422, as before
    ):
        assert {t for t in templates if compile_path(t)[0].match(path)} == {template}


def test_the_schema_lists_the_holdings_routes_once_in_v1s_order() -> None:
    app = create_app(Settings(credentials_keys="x"))
    paths = list(app.openapi()["paths"])
    assert paths.count(ACCOUNT_HOLDINGS) == paths.count(PORTFOLIO_HOLDINGS) == 1
    # v1 includes portfolios and accounts before holdings, valuations after.
    assert paths.index("/v1/accounts/{account_id}") < paths.index(ACCOUNT_HOLDINGS)
    assert paths.index(PORTFOLIO_HOLDINGS) < paths.index("/v1/portfolios/{portfolio_id}/valuations")
    assert [r.name for r in api_routes(app)].count("account_holdings") == 1
