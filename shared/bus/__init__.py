"""The message-bus port and its two adapters: Kafka (distributed) and in-memory (embedded, unit tests)."""

from shared.bus.port import BusUnavailable, MessageBus, OutgoingMessage, Record, Subscription

__all__ = ["BusUnavailable", "MessageBus", "OutgoingMessage", "Record", "Subscription"]
