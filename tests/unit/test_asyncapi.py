"""The AsyncAPI document: valid by the official AsyncAPI 3.0.0 JSON Schema, and true to the code."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from shared import consumer_groups, topics
from shared.asyncapi import topic_use
from shared.events import EVENT_TYPES
from shared.schema_files import ASYNCAPI_FILE, SCHEMA_DIR

OFFICIAL_SCHEMA = Path(__file__).parents[1] / "support" / "asyncapi" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema_rs.Draft7Validator:
    return jsonschema_rs.Draft7Validator(json.loads(OFFICIAL_SCHEMA.read_text()))


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / ASYNCAPI_FILE).read_text())


def _errors(validator: jsonschema_rs.Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}" for e in validator.iter_errors(document)
    ]


def test_the_document_is_valid_asyncapi_3(
    validator: jsonschema_rs.Draft7Validator, document: dict[str, Any]
) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert _errors(validator, document) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (
            ("channels", "fetchersHeartbeats", "bindings", "kafka", "topicConfiguration", "cleanup.policy"),
            "compact",
        ),
        (("operations", "ledgerReceives_holdingsSnapshots", "action"), "consume"),
        (("components", "messages", "HoldingsChanged", "payload"), {"type": 7}),
    ],
)
def test_the_validator_refuses_a_broken_document(
    validator: jsonschema_rs.Draft7Validator, document: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    """It looks into Kafka bindings, operations and payload schemas, not only the outline."""
    broken = copy.deepcopy(document)
    *parents, last = path
    node = broken
    for name in parents:
        node = node[name]
    node[last] = value
    assert _errors(validator, broken)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*([node["$ref"]] if "$ref" in node else []), *(r for v in node.values() for r in _refs(v))]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert "#/components/schemas/Holding" in refs
    for ref in refs:
        node = document
        for name in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and name in node, f"{ref} does not resolve"
            node = node[name]


def test_every_topic_is_a_channel_with_its_retention(document: dict[str, Any]) -> None:
    channels = {c["address"]: c for c in document["channels"].values()}
    assert set(channels) == set(topics.all_topics([topics.BROKER]))
    for address, channel in channels.items():
        policy = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == (["compact"] if address in topics.COMPACTED else ["delete"]), address
    assert channels["holdings.changes"]["x-key"] == "account_id"
    assert set(channels["holdings.changes"]["messages"]) == {"HoldingsChanged", "AccountRemoved"}
    assert channels["sync.requests.{broker}"]["parameters"]["broker"]
    assert channels["holdings.snapshots.dlq"]["x-producers"] == ["ledger"]


def test_consumer_groups_are_the_deployments(document: dict[str, Any]) -> None:
    named = {
        group
        for operation in document["operations"].values()
        if "bindings" in operation
        for group in operation["bindings"]["kafka"]["groupId"]["enum"]
    }
    assert named == set(consumer_groups.all_groups([topics.BROKER]))
    sends = {op["channel"]["$ref"] for op in document["operations"].values() if op["action"] == "send"}
    assert "#/channels/holdingsChanges" in sends


def test_each_event_travels_with_its_checked_in_json_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model in EVENT_TYPES:
        name = model.__name__
        published = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
        published.pop("$defs", None)
        as_in_document = json.loads(json.dumps(published).replace("#/$defs/", "#/components/schemas/"))
        assert schemas[name] == as_in_document, name
        assert document["components"]["messages"][name]["payload"] == {"$ref": f"#/components/schemas/{name}"}


def test_a_topic_nobody_described_fails_the_generation_with_where_to_say_it() -> None:
    with pytest.raises(LookupError, match=r"shared/topics\.py USES"):
        topic_use("holdings.unheard_of")
