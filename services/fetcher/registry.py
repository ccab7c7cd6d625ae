"""Broker adapters by code.

An adapter module registers a factory with `@register_broker(code, limits=..., base_url=...)`.
Modules are found through the `portfolio_sync.brokers` entry-point group — ours and any installed
package's alike — so a third party ships a broker without touching this repository:

    [project.entry-points."portfolio_sync.brokers"]
    mybroker = "mypackage.mybroker"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from services.fetcher.adapter import BrokerAdapter
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from shared.settings import Settings

ENTRY_POINT_GROUP = "portfolio_sync.brokers"


@dataclass(frozen=True)
class AdapterContext:
    """What a factory gets: the settings, the broker's limiter and the base URL to call."""

    settings: Settings
    limiter: BrokerLimiter
    base_url: str


AdapterFactory = Callable[[AdapterContext], BrokerAdapter]


@dataclass(frozen=True)
class BrokerPlugin:
    code: str
    create: AdapterFactory
    limits: BrokerLimits
    base_url: str


class UnknownBroker(LookupError):
    pass


_REGISTRY: dict[str, BrokerPlugin] = {}


def register_broker(
    code: str, *, limits: BrokerLimits, base_url: str = ""
) -> Callable[[AdapterFactory], AdapterFactory]:
    """Register `factory` as the adapter of `code`, with the broker's documented limits."""

    def add(factory: AdapterFactory) -> AdapterFactory:
        known = _REGISTRY.get(code)
        if known is not None and known.create is not factory:
            raise ValueError(f"broker code {code!r} is registered twice")
        _REGISTRY[code] = BrokerPlugin(code=code, create=factory, limits=limits, base_url=base_url)
        return factory

    return add


def _discover() -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()  # importing the module runs its @register_broker
        except Exception as exc:
            raise RuntimeError(
                f"broker plug-in {entry_point.name!r} ({entry_point.value}) failed to load: {exc!r}"
            ) from exc
        if entry_point.name not in _REGISTRY:
            raise RuntimeError(
                f"broker plug-in {entry_point.value} registered no adapter named {entry_point.name!r}"
            )


def known_brokers() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def plugin(code: str) -> BrokerPlugin:
    _discover()
    try:
        return _REGISTRY[code]
    except KeyError:
        raise UnknownBroker(
            f"no adapter for broker {code!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_adapter(code: str, settings: Settings) -> tuple[BrokerAdapter, BrokerLimiter]:
    """The adapter of `code` with its limiter: documented limits, overridden by BROKER_LIMITS."""
    found = plugin(code)
    overrides = settings.broker_limits.get(code, {})
    limiter = BrokerLimiter(BrokerLimits.model_validate(found.limits.model_dump() | overrides))
    base_url = settings.broker_base_urls.get(code, found.base_url)
    return found.create(AdapterContext(settings=settings, limiter=limiter, base_url=base_url)), limiter
