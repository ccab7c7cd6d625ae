"""Today's event schemas against every released version's (shared/schemas/released/), and proof that
the checker catches each kind of break, made on purpose on a copy of today's schemas."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.schema_compat import Schema, breaking_changes
from shared.schema_files import RELEASED_DIR, released_versions, rendered_schemas

Change = Callable[[dict[str, Schema]], None]


def _today() -> dict[str, Schema]:
    return {name.removesuffix(".json"): json.loads(text) for name, text in rendered_schemas().items()}


def test_todays_schemas_break_no_released_version() -> None:
    versions = released_versions()
    assert "0.1.0" in versions, f"no released schemas under {RELEASED_DIR}"
    today = _today()
    for version, released in versions.items():
        breaks = breaking_changes(released, today)
        assert not breaks, (
            f"breaks subscribers of {version}: "
            + "; ".join(map(str, breaks))
            + (". Make the change compatible, or give the event a new schema_version (docs/events.md).")
        )


def _fields(schemas: dict[str, Schema], event: str) -> dict[str, Any]:
    fields: dict[str, Any] = schemas[event]["properties"]
    return fields


def _remove_reason(s: dict[str, Schema]) -> None:
    del _fields(s, "SyncFailed")["reason"]
    s["SyncFailed"]["required"].remove("reason")


def _rename_reason(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["why"] = _fields(s, "SyncFailed").pop("reason")
    s["SyncFailed"]["required"] = [("why" if f == "reason" else f) for f in s["SyncFailed"]["required"]]


def _shorter_reason(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["reason"]["maxLength"] = 100


def _longer_reason(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["reason"]["maxLength"] = 5000


def _retry_at_never_null(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["retry_at"] = {"format": "date-time", "type": "string"}


def _broker_may_be_null(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["broker"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def _attempt_as_string(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["attempt"]["type"] = "string"


def _new_required_field(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["region"] = {"type": "string"}
    s["SyncFailed"]["required"].append("region")


def _fetcher_id_required(s: dict[str, Schema]) -> None:
    s["SyncFailed"]["required"].append("fetcher_id")


def _reason_optional(s: dict[str, Schema]) -> None:
    s["SyncFailed"]["required"].remove("reason")


def _kind_value_removed(s: dict[str, Schema]) -> None:
    s["SyncFailed"]["$defs"]["FailureKind"]["enum"].remove("transient")


def _kind_value_renamed(s: dict[str, Schema]) -> None:
    values = s["SyncFailed"]["$defs"]["FailureKind"]["enum"]
    values[values.index("auth")] = "authentication"


def _holding_quantity_removed(s: dict[str, Schema]) -> None:
    holding = s["HoldingSnapshot"]["$defs"]["Holding"]
    del holding["properties"]["quantity"]
    holding["required"].remove("quantity")


def _event_type_changed(s: dict[str, Schema]) -> None:
    _fields(s, "AccountRemoved")["event_type"]["const"] = "account_deleted"


def _event_dropped(s: dict[str, Schema]) -> None:
    del s["SnapshotAccepted"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_remove_reason, "SyncFailed.reason: field removed"),
        (_rename_reason, "SyncFailed.reason: renamed (to why)"),
        (_shorter_reason, "SyncFailed.reason: narrowed (maxLength 2000 -> 100)"),
        (_longer_reason, "SyncFailed.reason: widened (maxLength 2000 -> 5000)"),
        (_retry_at_never_null, "SyncFailed.retry_at: narrowed (no longer null)"),
        (_broker_may_be_null, "SyncFailed.broker: widened (now also null)"),
        (_attempt_as_string, "SyncFailed.attempt: type changed ('integer' -> 'string')"),
        (_new_required_field, "SyncFailed.region: new required field"),
        (_fetcher_id_required, "SyncFailed.fetcher_id: field made required"),
        (_reason_optional, "SyncFailed.reason: field made optional"),
        (_kind_value_removed, "SyncFailed.kind: enum value removed ('transient'"),
        (_kind_value_renamed, "SyncFailed.kind: enum value removed ('auth'"),
        (_holding_quantity_removed, "HoldingSnapshot.holdings[].quantity: field removed"),
        (_event_type_changed, "AccountRemoved.event_type: const changed"),
        (_event_dropped, "SnapshotAccepted: event removed"),
    ],
)
def test_each_kind_of_break_is_caught(change: Change, expected: str) -> None:
    released, today = _today(), _today()
    change(today)

    breaks = [str(b) for b in breaking_changes(released, today)]

    assert any(b.startswith(expected) for b in breaks), breaks


def _new_optional_field(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["region"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


def _kind_value_added(s: dict[str, Schema]) -> None:
    s["SyncFailed"]["$defs"]["FailureKind"]["enum"].append("maintenance")


def _described_anew(s: dict[str, Schema]) -> None:
    _fields(s, "SyncFailed")["reason"]["description"] = "What went wrong, in words."
    s["SyncFailed"]["title"] = "A failed sync"


def _new_event(s: dict[str, Schema]) -> None:
    s["HoldingsCurrent"] = copy.deepcopy(s["HoldingsChanged"])


@pytest.mark.parametrize("change", [_new_optional_field, _kind_value_added, _described_anew, _new_event])
def test_additive_changes_pass(change: Change) -> None:
    released, today = _today(), _today()
    change(today)

    assert breaking_changes(released, today) == []


def test_a_break_with_a_new_schema_version_passes() -> None:
    released, today = _today(), _today()
    _remove_reason(today)
    _fields(today, "SyncFailed")["schema_version"]["default"] = 2

    assert breaking_changes(released, today) == []
