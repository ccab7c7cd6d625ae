"""The AsyncAPI 3.0 document of every topic: what a subscriber reads to know the stream.

Built from `shared.topics` (each topic of `all_topics`, what it carries, who produces and consumes
it), the payload models (`shared.events` and the two that are not events) and the configuration Kafka
gets for each topic (`shared.bus.kafka.retention_config`). `make schemas` writes it to
`shared/schemas/asyncapi.json`; the API serves that file at `GET /v1/asyncapi.json`.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel

from shared import topics
from shared.bus.dead_letters import DeadLetter
from shared.bus.kafka import retention_config
from shared.events import EVENT_TYPES
from shared.fetcher_heartbeats import FetcherHeartbeat

KAFKA_BINDING = "0.5.0"
_SCHEMAS = "#/components/schemas/"

_DESCRIPTION = """\
Every Kafka topic of portfolio-sync, each message's JSON Schema, and which service sends or receives
it. A subscriber bootstraps from the compacted `holdings.current` (each account's complete positions)
and follows `holdings.changes`; docs/events.md says how to hand over between them, what both can be
counted on for (order per account, at least once: dedupe by `event_id`) and how the schemas may
evolve.

**Addresses.** A channel's address is its topic's name. A deployment with `KAFKA_NAMESPACE` set
prefixes every topic and consumer group with it on the wire: with `KAFKA_NAMESPACE=prod.`, the topic
`holdings.changes` is `prod.holdings.changes` and the group `ledger` is `prod.ledger`. `{broker}`
stands for a broker's name in lower case (`sim`, `zerodha`, ...): one topic per broker.

**Keys and order.** Messages are JSON (UTF-8). Each is keyed by its account's id (a UUID string)
unless its message's key says otherwise, and Kafka's default partitioner puts one key on one
partition: one account's messages are read in the order they were published.

**Dead letters.** Each consumed topic has a `<topic>.dlq` where a consumer parks a message it cannot
process, with the reason and the original bytes.
"""


def _package_version() -> str:
    try:
        return version("portfolio-sync")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"


def payload_models() -> dict[str, type[BaseModel]]:
    """Every message payload, by the name a `TopicUse` gives it."""
    models: list[type[BaseModel]] = [*EVENT_TYPES, FetcherHeartbeat, DeadLetter]
    return {model.__name__: model for model in models}


def topic_use(topic: str) -> topics.TopicUse:
    """What `topic` carries; a dead-letter topic's use follows from its source topic's."""
    if not topics.is_dead_letters(topic):
        if topic not in topics.USES:
            raise LookupError(
                f"topic {topic!r} has no TopicUse: say what it carries in shared/topics.py USES"
            )
        return topics.USES[topic]
    source = topic.removesuffix(topics.dead_letters(""))
    origin = topic_use(source)
    return topics.TopicUse(
        summary=f"Messages of `{source}` that its consumers could not process, with the reason.",
        messages=("DeadLetter",),
        # A consumer group is named for its service (`ledger`, `fetcher.{broker}`).
        producers=tuple(sorted({group.split(".")[0] for group in origin.groups})),
        readers=("api",),
        key=origin.key,
    )


def _channel_id(address: str) -> str:
    """`sync.requests.{broker}.retry` -> `syncRequestsBrokerRetry`: an id fit for a JSON pointer."""
    first, *rest = [word for word in re.split(r"[^A-Za-z0-9]+", address) if word]
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def _topic_configuration(topic: str) -> dict[str, Any]:
    """Kafka's settings as the AsyncAPI Kafka binding spells them (a list, numbers)."""
    config: dict[str, Any] = {"cleanup.policy": ["delete"]}
    for name, value in retention_config(topic).items():
        if name == "cleanup.policy":
            config[name] = value.split(",")
        elif name == "min.cleanable.dirty.ratio":
            config[name] = float(value)
        else:
            config[name] = int(value)
    return config


def _channel(topic: str, use: topics.TopicUse) -> dict[str, Any]:
    retention = (
        "Compacted: Kafka keeps each key's latest message (an empty value is a tombstone: the key is gone)."
        if topic in topics.COMPACTED
        else "Kept as long as the cluster's `log.retention.*` says, then deleted (not compacted)."
    )
    channel: dict[str, Any] = {
        "address": topic,
        "title": topic,
        "summary": use.summary,
        "description": f"Key: `{use.key}`, so one {use.key.removesuffix('_id')}'s messages share a "
        f"partition and stay in order. {retention}",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in use.messages},
        "bindings": {
            "kafka": {"topicConfiguration": _topic_configuration(topic), "bindingVersion": KAFKA_BINDING}
        },
        "x-key": use.key,
        "x-producers": list(use.producers),
        "x-consumer-groups": list(use.groups),
    }
    if topics.BROKER in topic:
        channel["parameters"] = {
            "broker": {"description": "A broker's name, in lower case (`sim`, `zerodha`)."}
        }
    return channel


def _operations(channel_id: str, use: topics.TopicUse) -> dict[str, dict[str, Any]]:
    channel = {"$ref": f"#/channels/{channel_id}"}
    messages = [{"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in use.messages]
    operations: dict[str, dict[str, Any]] = {}
    for service in use.producers:
        operations[f"{service}Sends_{channel_id}"] = {
            "action": "send",
            "channel": channel,
            "messages": messages,
            "summary": f"The {service} service publishes to this topic.",
        }
    for group in use.groups:
        service = group.split(".")[0]
        operations[f"{service}Receives_{channel_id}"] = {
            "action": "receive",
            "channel": channel,
            "messages": messages,
            "summary": f"The {service} service consumes it in consumer group `{group}`.",
            "bindings": {
                "kafka": {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": KAFKA_BINDING}
            },
        }
    for service in use.readers:
        operations[f"{service}Reads_{channel_id}"] = {
            "action": "receive",
            "channel": channel,
            "messages": messages,
            "summary": f"The {service} service reads it without a consumer group (to show operators).",
        }
    return operations


def _schemas(models: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """Each payload's JSON Schema (as `shared/schemas/<name>.json`), with the parts they share
    (`Holding`, enums) lifted into components so that the references resolve in this document."""
    schemas: dict[str, Any] = {}
    for name, model in models.items():
        schema = model.model_json_schema(mode="serialization", ref_template=_SCHEMAS + "{model}")
        for part, part_schema in schema.pop("$defs", {}).items():
            if schemas.setdefault(part, part_schema) != part_schema:
                raise ValueError(f"two payloads define {part} differently")
        schemas[name] = schema
    return dict(sorted(schemas.items()))


def _message(name: str, model: type[BaseModel], key: str) -> dict[str, Any]:
    key_schema: dict[str, Any] = {"type": "string", "description": f"The message's `{key}`."}
    if key == "account_id":
        key_schema["format"] = "uuid"
    return {
        "name": name,
        "title": name,
        "summary": (model.__doc__ or name).strip().splitlines()[0],
        "contentType": "application/json",
        "payload": {"$ref": _SCHEMAS + name},
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": KAFKA_BINDING}},
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every topic of `shared.topics.all_topics`."""
    models = payload_models()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in topics.all_topics([topics.BROKER]):
        use = topic_use(topic)
        unknown = [name for name in use.messages if name not in models]
        if unknown:
            raise LookupError(f"topic {topic!r} carries {unknown}: no such payload model")
        channel_id = _channel_id(topic)
        channels[channel_id] = _channel(topic, use)
        operations.update(_operations(channel_id, use))
        for name in use.messages:
            messages[name] = _message(name, models[name], use.key)
    used = {name: models[name] for name in sorted(messages)}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "portfolio-sync events",
            "version": _package_version(),
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The deployment's Kafka cluster (its KAFKA_BOOTSTRAP_SERVERS).",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092", "description": "host:port"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())), "schemas": _schemas(used)},
    }
