"""Whether today's event schemas keep a released version's subscribers whole (docs/events.md).

The rule is Confluent's FULL compatibility, checked against every released version (FULL_TRANSITIVE):
a subscriber still reading with a released schema can read what today's code publishes, and today's
code can read what was published under it (a compacted or long-kept topic, a replayed dead letter).
So a field's shape does not change in either direction; what may change is:

- a new optional field (readers ignore fields they do not know: `extra="ignore"`);
- a new enum value (readers must take an unknown value as documented in docs/events.md);
- titles, descriptions and defaults.

Anything else is a break, allowed only with a new `schema_version` of the event (which then goes on a
new version of its topic). `breaking_changes` lists the breaks; the unit test fails on any.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]

_IGNORED = frozenset({"title", "description", "default", "examples", "$comment"})
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")
_EXACT = ("type", "format", "pattern", "const", "multipleOf")


@dataclass(frozen=True)
class Break:
    """One change a reader on the other side of it cannot take."""

    event: str
    path: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.event}{'.' + self.path if self.path else ''}: {self.kind} ({self.detail})"


def schema_version(schema: Schema) -> Any:
    """The event's version: its `schema_version` field's default."""
    return schema.get("properties", {}).get("schema_version", {}).get("default")


def breaking_changes(released: dict[str, Schema], current: dict[str, Schema]) -> list[Break]:
    """The breaks between a released version's schemas and today's, by event name. An event whose
    `schema_version` changed is a new version of it and is not held to the released one."""
    breaks: list[Break] = []
    for event, old in sorted(released.items()):
        new = current.get(event)
        if new is None:
            breaks.append(Break(event, "", "event removed", "its subscribers would hear nothing more"))
        elif schema_version(new) == schema_version(old):
            breaks += _Comparison(event, old, new).compare(old, new, "")
    return breaks


class _Comparison:
    def __init__(self, event: str, old_root: Schema, new_root: Schema) -> None:
        self.event, self.old_root, self.new_root = event, old_root, new_root

    def compare(self, old: Schema, new: Schema, path: str) -> list[Break]:
        old, new = _resolved(old, self.old_root), _resolved(new, self.new_root)
        if "anyOf" in old or "anyOf" in new:
            return self._alternatives(old, new, path)
        breaks = self._enum(old, new, path) + self._bounds(old, new, path)
        for word in _EXACT:
            if old.get(word) != new.get(word):
                breaks.append(self._break(path, f"{word} changed", f"{old.get(word)!r} -> {new.get(word)!r}"))
        if "properties" in old or "properties" in new:
            breaks += self._object(old, new, path)
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            breaks += self.compare(old["items"], new["items"], f"{path}[]")
        return breaks

    def _break(self, path: str, kind: str, detail: str) -> Break:
        return Break(self.event, path, kind, detail)

    def _object(self, old: Schema, new: Schema, path: str) -> list[Break]:
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        added = {name: new_fields[name] for name in new_fields.keys() - old_fields.keys()}
        breaks = []
        for name in sorted(old_fields.keys() - new_fields.keys()):
            same = [a for a, schema in sorted(added.items()) if self._same(old_fields[name], schema)]
            kind, detail = ("renamed", f"to {same[0]}") if same else ("field removed", "readers may need it")
            breaks.append(self._break(_join(path, name), kind, detail))
        for name in sorted(new_required - old_required):
            kind = "new required field" if name in added else "field made required"
            breaks.append(self._break(_join(path, name), kind, "data published without it is refused"))
        for name in sorted((old_required - new_required) & new_fields.keys()):
            breaks.append(self._break(_join(path, name), "field made optional", "old readers require it"))
        for name in sorted(old_fields.keys() & new_fields.keys()):
            breaks += self.compare(old_fields[name], new_fields[name], _join(path, name))
        return breaks

    def _alternatives(self, old: Schema, new: Schema, path: str) -> list[Break]:
        olds, news = _by_type(old, self.old_root), _by_type(new, self.new_root)
        breaks = [
            self._break(path, "narrowed", f"no longer {kind}") for kind in sorted(olds.keys() - news.keys())
        ]
        breaks += [
            self._break(path, "widened", f"now also {kind}") for kind in sorted(news.keys() - olds.keys())
        ]
        for kind in sorted(olds.keys() & news.keys()):
            breaks += self.compare(olds[kind], news[kind], path)
        return breaks

    def _enum(self, old: Schema, new: Schema, path: str) -> list[Break]:
        if "enum" not in old and "enum" not in new:
            return []
        if "enum" not in new:
            return [self._break(path, "widened", "no longer an enum")]
        if "enum" not in old:
            return [self._break(path, "narrowed", "an enum now")]
        removed = [v for v in old["enum"] if v not in new["enum"]]
        return [
            self._break(path, "enum value removed", f"{v!r}: data carrying it is refused") for v in removed
        ]

    def _bounds(self, old: Schema, new: Schema, path: str) -> list[Break]:
        breaks = []
        for word, lower in [*((w, True) for w in _LOWER_BOUNDS), *((w, False) for w in _UPPER_BOUNDS)]:
            before, after = old.get(word), new.get(word)
            if before == after:
                continue
            tighter = after is not None and (before is None or (after > before if lower else after < before))
            kind = "narrowed" if tighter else "widened"
            breaks.append(self._break(path, kind, f"{word} {before!r} -> {after!r}"))
        return breaks

    def _same(self, old: Schema, new: Schema) -> bool:
        return not self.compare(old, new, "")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _resolved(node: Schema, root: Schema) -> Schema:
    """`node` with its `$ref` (to `#/$defs/...`) replaced by what it names, without the words that
    do not change what a reader accepts."""
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return {k: v for k, v in node.items() if k not in _IGNORED}


def _by_type(node: Schema, root: Schema) -> dict[str, Schema]:
    """A schema's alternatives (`anyOf`, or itself alone) by the type each accepts."""
    alternatives = [_resolved(alt, root) for alt in node.get("anyOf", [node])]
    return {str(alt.get("type", "any")): alt for alt in alternatives}
