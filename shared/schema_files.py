"""JSON Schema files for every event, so subscribers in any language can validate what they read.

`python -m shared.schema_files` rewrites `shared/schemas/`; a test fails when the files drift.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.events import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schemas"


def rendered_schemas() -> dict[str, str]:
    """File name -> file text, for every event type."""
    return {
        f"{model.__name__}.json": json.dumps(
            model.model_json_schema(mode="serialization"), indent=2, sort_keys=True
        )
        + "\n"
        for model in EVENT_TYPES
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for name, text in rendered_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas():
        print(f"wrote {path}")
