"""The FastAPI application: `create_app` wires routes, error handlers and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from services.api.context import ApiContext, ApiResources
from services.api.routes import (
    accounts,
    brokers,
    health,
    holdings,
    portfolios,
    snapshots,
    statements,
    sync,
    transactions,
    users,
)
from services.api.storage import AlreadyExists
from shared.bus.memory import InMemoryBus
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.runtime import checked_engine, started_bus
from shared.settings import Settings

__all__ = ["ApiResources", "create_app", "open_resources"]

BUS_CLIENT_ID = "api"

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
        "description": "Positions now or at a past time (`as_of`), per account or per portfolio.",
    },
    {
        "name": "snapshots",
        "description": "Every snapshot an account received, and the review of a held (suspicious) one.",
    },
    {"name": "transactions", "description": "Trades: derived from snapshot changes, or reported by brokers."},
    {"name": "sync", "description": "Sync history and on-demand syncs."},
    {"name": "health", "description": "Liveness and readiness probes."},
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
    )
    if resources is not None:
        # Usable at once, even by a server or test transport that does not run the lifespan.
        app.state.api_context = ApiContext.create(settings, resources)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(AlreadyExists, _already_exists)
    app.include_router(health.router)
    v1 = APIRouter(prefix="/v1")
    for module in (users, brokers, portfolios, accounts, holdings, snapshots, transactions, sync, statements):
        v1.include_router(module.router)
    app.include_router(v1)
    return app


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[ApiResources]:
    """Open the engine (refusing an out-of-date schema) and start the bus; close both on exit."""
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(checked_engine(settings))
        bus: MessageBus
        if settings.bus == "memory":
            # Nothing else shares this process's bus: "sync now" then reaches no fetcher. For tests.
            bus = InMemoryBus()
        else:
            bus = await stack.enter_async_context(started_bus(settings, client_id=BUS_CLIENT_ID))
        yield ApiResources(engine=engine, bus=bus, cipher=cipher)


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


def _operation_id(route: APIRoute) -> str:
    return route.name


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, minus the offending input: a rejected body may hold credentials."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


async def _already_exists(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


def _package_version() -> str:
    try:
        return version("portfolio-sync")
    except PackageNotFoundError:
        return "0+unknown"
