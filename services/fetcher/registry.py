"""Broker adapters by code.

An adapter module registers a factory with `@register_broker(BROKER_TYPE)`, where BROKER_TYPE is
the broker's `shared.brokers.BrokerType` (its code, credential fields, documented limits and base
URL: one description that the API and `topics create` read too). Modules are found through the
`portfolio_sync.brokers` entry-point group — ours and any installed package's alike — so a third
party ships a broker without touching this repository; its BrokerType goes in the
`portfolio_sync.broker_types` group, and an adapter whose type is not declared there is refused:

    [project.entry-points."portfolio_sync.brokers"]
    mybroker = "mypackage.mybroker"
    [project.entry-points."portfolio_sync.broker_types"]
    mybroker = "mypackage.mybroker:BROKER_TYPE"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from services.fetcher.adapter import BrokerAdapter
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from shared.brokers import BrokerType, broker_types
from shared.settings import Settings

ENTRY_POINT_GROUP = "portfolio_sync.brokers"
BROKER_TYPES_GROUP = "portfolio_sync.broker_types"


@dataclass(frozen=True)
class AdapterContext:
    """What a factory gets: the settings, the broker's limiter and the base URL to call."""

    settings: Settings
    limiter: BrokerLimiter
    base_url: str


AdapterFactory = Callable[[AdapterContext], BrokerAdapter]


@dataclass(frozen=True)
class BrokerPlugin:
    broker_type: BrokerType
    create: AdapterFactory

    @property
    def code(self) -> str:
        return self.broker_type.code

    @property
    def limits(self) -> BrokerLimits:
        return self.broker_type.adapter_limits()

    @property
    def base_url(self) -> str:
        return self.broker_type.base_url


class UnknownBroker(LookupError):
    pass


_REGISTRY: dict[str, BrokerPlugin] = {}


def register_broker(broker_type: BrokerType) -> Callable[[AdapterFactory], AdapterFactory]:
    """Register `factory` as the adapter of `broker_type` (its code, limits and base URL)."""
    broker_type.adapter_limits()  # a type without limits (an import, like csv) has no adapter

    def add(factory: AdapterFactory) -> AdapterFactory:
        known = _REGISTRY.get(broker_type.code)
        if known is not None and known.create is not factory:
            raise ValueError(f"broker code {broker_type.code!r} is registered twice")
        _REGISTRY[broker_type.code] = BrokerPlugin(broker_type=broker_type, create=factory)
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
    declared = broker_types()
    for code, found in _REGISTRY.items():
        if declared.get(code) != found.broker_type:
            raise RuntimeError(
                f"broker adapter {code!r} uses a BrokerType that is not the one declared in "
                f"shared.brokers or the {BROKER_TYPES_GROUP!r} entry-point group; the API and the "
                "scheduler only know declared types"
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
    limiter = BrokerLimiter(BrokerLimits.model_validate(found.limits.model_dump() | overrides), broker=code)
    base_url = settings.broker_base_urls.get(code, found.base_url)
    return found.create(AdapterContext(settings=settings, limiter=limiter, base_url=base_url)), limiter
