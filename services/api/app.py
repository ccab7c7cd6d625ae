"""The FastAPI application: `create_app` wires routes, error handlers and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import compile_path

from services.api.body_cap import RequestBodyCap
from services.api.context import ApiContext, ApiResources
from services.api.dashboard import mount_dashboard
from services.api.docs_page import serve_docs
from services.api.errors import install_error_handlers
from services.api.fast_reads import open_fast_reads
from services.api.guard import GuardedRoute
from services.api.metrics import RequestMetrics
from services.api.openapi_links import add_links, name_broker_codes
from services.api.routes import (
    accounts,
    admin,
    asyncapi,
    broker_pauses,
    brokers,
    error_responses,
    health,
    holdings,
    portfolios,
    removal,
    schedules,
    snapshots,
    statements,
    sync,
    tokens,
    transactions,
    users,
    valuations,
    webhooks,
)
from shared.brokers import broker_types
from shared.bus.memory import InMemoryBus
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.db.engine import POOL_SIZE
from shared.runtime import checked_engine, started_bus
from shared.settings import Settings
from shared.statements import MAX_STATEMENT_BYTES

__all__ = ["ApiResources", "create_app", "open_resources"]

BUS_CLIENT_ID = "api"
V1 = "/v1"

_DESCRIPTION = """\
One consolidated, current record of what every broker account holds.

Create a user with `POST /v1/users` and keep the `api_token` it returns (it is shown once). Send it
as `Authorization: Bearer <token>` on every other `/v1` request. Each user sees only their own
portfolios and accounts. Decimal amounts are JSON strings, times are UTC (ISO 8601).
"""

_TAGS = [
    {"name": "users", "description": "Sign up and see who the token belongs to."},
    {"name": "brokers", "description": "The brokers accounts can be synced from, and what each needs."},
    {"name": "portfolios", "description": "Named groups of broker accounts."},
    {
        "name": "accounts",
        "description": "Broker accounts, their sync status and their write-only credentials.",
    },
    {
        "name": "holdings",
        "description": "Positions now or at a past time (`as_of`), per account or per portfolio, and a "
        "portfolio's value over time.",
    },
    {
        "name": "snapshots",
        "description": "Every snapshot an account received, and the review of a held (suspicious) one.",
    },
    {"name": "transactions", "description": "Trades: derived from snapshot changes, or reported by brokers."},
    {"name": "sync", "description": "Sync history and on-demand syncs."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "events", "description": "The AsyncAPI document of the Kafka topics, for subscribers."},
    {
        "name": "admin",
        "description": "Operators only: invites, tokens for users who lost theirs; users, accounts and "
        "runs across users, outcomes per broker, fetchers alive, consumer lag, dead letters, stuck runs.",
    },
]


def create_app(settings: Settings, *, resources: ApiResources | None = None) -> FastAPI:
    """Build the app; open nothing. Without `resources`, the lifespan opens (and closes) its own."""
    app = FastAPI(
        title="portfolio-sync API",
        version=_package_version(),
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        lifespan=_lifespan(settings, resources),
        # Operation ids are the route functions' names (`list_portfolios`): stable and readable, so
        # generated clients and OpenAPI links can name them.
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served by serve_docs, from the package's own files
        redoc_url=None,
    )
    if resources is not None:
        # Usable at once, even by a server or test transport that does not run the lifespan.
        app.state.api_context = ApiContext.create(settings, resources)
    install_error_handlers(app)
    app.include_router(health.router)
    # The holdings reads are the API's hottest requests: FastAPI tries routes in order, walking each
    # included router (0.2 ms of CPU to reach them in v1's place, near half what /healthz costs in
    # all), so they are tried first here; the schema documents them in their place in v1 (no other
    # route matches their paths: tests/unit/api/test_api_routing.py).
    app.include_router(holdings.router, prefix=V1, include_in_schema=False)
    # Every /v1 route reads the database (or the bus), so any of them may find it down.
    v1 = APIRouter(prefix=V1, responses=error_responses(503))
    for module in (
        users,
        brokers,
        tokens,
        portfolios,
        accounts,
        removal,
        holdings,
        valuations,
        snapshots,
        transactions,
        sync,
        statements,
        schedules,
        admin,
        broker_pauses,
        webhooks,
    ):
        v1.include_router(module.router)
    app.include_router(v1)
    app.include_router(asyncapi.router, prefix=V1)  # a file of the package: no database, no 503
    mount_dashboard(app)
    serve_docs(app)
    # Walking the included routers is the dearest step of building an app (FastAPI resolves each
    # route's context): do it once, for the guard check here and the metrics' templates below.
    contexts = list(iter_route_contexts(app.routes))
    unguarded = [r.path for r in _routes_of(contexts) if not isinstance(r, GuardedRoute)]
    if unguarded:
        # A plain APIRoute would parse its body before the token is checked: refuse to build.
        raise TypeError(f"routes not built with route_class=GuardedRoute: {unguarded}")
    statement_upload, _, _ = compile_path(V1 + statements.STATEMENTS_PATH)
    app.add_middleware(
        RequestBodyCap,
        max_bytes=settings.api_max_body_bytes,
        larger=[(statement_upload, MAX_STATEMENT_BYTES)],
    )
    # Outermost: it times the body cap's refusals too.
    templates = [(c.original_route, c.path_format) for c in contexts if c.path_format is not None]
    app.add_middleware(RequestMetrics, routes=lambda: templates)
    _link_operations(app)
    return app


def _link_operations(app: FastAPI) -> None:
    """The OpenAPI document, built once, with links between operations (openapi_links.py) and the
    deployment's broker codes."""
    build = app.openapi
    codes = sorted(broker_types())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = name_broker_codes(add_links(build()), codes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[ApiResources]:
    """Open the engine (refusing an out-of-date schema), on Postgres the fast reads' pool (as many
    connections as the engine keeps), and start the bus; close them on exit."""
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(checked_engine(settings, "api"))
        fast_reads = None
        if engine.dialect.name == "postgresql":
            fast_reads = await stack.enter_async_context(
                open_fast_reads(engine.url, max_connections=POOL_SIZE)
            )
        bus: MessageBus
        if settings.bus == "memory":
            # Nothing else shares this process's bus: "sync now" then reaches no fetcher. For tests.
            bus = InMemoryBus()
        else:
            bus = await stack.enter_async_context(started_bus(settings, client_id=BUS_CLIENT_ID))
        yield ApiResources(engine=engine, bus=bus, cipher=cipher, fast_reads=fast_reads)


def _lifespan(
    settings: Settings, resources: ApiResources | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resources is not None:
            yield  # the caller owns the resources: nothing to open or close here
            return
        async with open_resources(settings) as opened:
            app.state.api_context = ApiContext.create(settings, opened)
            try:
                yield
            finally:
                del app.state.api_context

    return lifespan


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the app, those of included routers too."""
    return _routes_of(iter_route_contexts(app.routes))


def _routes_of(contexts: Iterable[Any]) -> list[APIRoute]:
    # Each once: the holdings routes are included twice (tried first, documented in v1).
    routes = {
        id(c.original_route): c.original_route for c in contexts if isinstance(c.original_route, APIRoute)
    }
    return list(routes.values())


def _operation_id(route: APIRoute) -> str:
    return route.name


def _package_version() -> str:
    try:
        return version("portfolio-sync")
    except PackageNotFoundError:
        return "0+unknown"
