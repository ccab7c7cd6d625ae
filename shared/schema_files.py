"""JSON Schema files for every event, so subscribers in any language can validate what they read,
and the AsyncAPI document of every topic (`shared.asyncapi`).

`python -m shared.schema_files` rewrites `shared/schemas/`; a test fails when the files drift.
`python -m shared.schema_files --release VERSION` copies today's event schemas to
`shared/schemas/released/VERSION/`, which the compatibility test (`shared.schema_compat`) holds every
later change to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shared.asyncapi import asyncapi_document
from shared.events import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schemas"
ASYNCAPI_FILE = "asyncapi.json"
RELEASED_DIR = SCHEMA_DIR / "released"


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def rendered_schemas() -> dict[str, str]:
    """File name -> file text, for every event type."""
    return {
        f"{model.__name__}.json": _text(model.model_json_schema(mode="serialization"))
        for model in EVENT_TYPES
    }


def rendered_files() -> dict[str, str]:
    """Every file of `shared/schemas/`: the event schemas and the AsyncAPI document."""
    return {**rendered_schemas(), ASYNCAPI_FILE: _text(asyncapi_document())}


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for name, text in rendered_files().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def release_schemas(version: str, released: Path = RELEASED_DIR) -> list[Path]:
    """Keep today's event schemas as those of `version`; a version once released is never rewritten."""
    directory = released / version
    if directory.exists():
        raise FileExistsError(f"{directory} exists: version {version} was released already")
    directory.mkdir(parents=True)
    written = []
    for name, text in rendered_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def released_versions(released: Path = RELEASED_DIR) -> dict[str, dict[str, Any]]:
    """Version -> {event name -> schema} of every released version."""
    return {
        directory.name: {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
        for directory in sorted(released.iterdir())
        if directory.is_dir()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.schema_files", description=__doc__)
    parser.add_argument("--release", metavar="VERSION", help="copy today's event schemas as this version's")
    args = parser.parse_args(argv)
    written = release_schemas(args.release) if args.release else write_schemas()
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
