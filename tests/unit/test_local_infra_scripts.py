"""The shell scripts that start local infrastructure (infra/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra"
# An unquoted here-document (<<EOF, not <<'EOF'): the shell expands what is in it.
_UNQUOTED_HEREDOC = re.compile(
    r"<<-?(?P<word>[A-Za-z_]+)\b[^\n]*\n(?P<body>.*?)^(?P=word)$", re.DOTALL | re.MULTILINE
)


@pytest.mark.parametrize("script", ["kafka/kafka-local", "postgres/pg-local", "stack"])
def test_unquoted_here_documents_run_no_command(script: str) -> None:
    # A `command` in a comment of kafka-local's server.properties ran `portfolio-sync topics create`
    # against 127.0.0.1:9092 on every broker start.
    for match in _UNQUOTED_HEREDOC.finditer((INFRA / script).read_text()):
        assert not re.search(r"(?<!\\)`", match["body"]), (
            f"infra/{script}: an unescaped backquote in a <<{match['word']} body runs a command"
        )
