"""Broker adapters by code: `@register_broker("code")` on a factory taking the settings."""

from __future__ import annotations

from collections.abc import Callable

from services.fetcher.adapter import BrokerAdapter
from shared.settings import Settings

AdapterFactory = Callable[[Settings], BrokerAdapter]

_REGISTRY: dict[str, AdapterFactory] = {}


class UnknownBroker(LookupError):
    pass


def register_broker(code: str) -> Callable[[AdapterFactory], AdapterFactory]:
    def add(factory: AdapterFactory) -> AdapterFactory:
        if code in _REGISTRY and _REGISTRY[code] is not factory:
            raise ValueError(f"broker code {code!r} is registered twice")
        _REGISTRY[code] = factory
        return factory

    return add


def _load_builtin_brokers() -> None:
    # Importing the modules runs their @register_broker decorators.
    from services.fetcher.brokers import simulated  # noqa: F401


def known_brokers() -> list[str]:
    _load_builtin_brokers()
    return sorted(_REGISTRY)


def create_adapter(code: str, settings: Settings) -> BrokerAdapter:
    _load_builtin_brokers()
    try:
        factory = _REGISTRY[code]
    except KeyError:
        raise UnknownBroker(
            f"no adapter for broker {code!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return factory(settings)
