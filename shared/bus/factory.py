"""Pick the bus adapter the settings name."""

from __future__ import annotations

from shared.bus.port import MessageBus
from shared.settings import Settings


def bus_from_settings(settings: Settings, *, client_id: str) -> MessageBus:
    if settings.bus == "memory":
        raise ValueError(
            "BUS=memory only works inside one process: use `portfolio-sync demo` for the embedded mode"
        )
    from shared.bus.kafka import KafkaBus

    return KafkaBus(settings.bootstrap_servers, client_id=client_id, namespace=settings.kafka_namespace)
