"""`portfolio-sync replay` refuses what it cannot do with a clear message, before touching anything."""

from __future__ import annotations

import uuid

import pytest

from services.cli import main


def test_replay_without_an_archive_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAW_ARCHIVE", "none")
    assert main(["replay", "--account", str(uuid.uuid4())]) == 2
    assert "RAW_ARCHIVE is none" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--account", "not-a-uuid"], "invalid UUID value"),
        (["--account", str(uuid.uuid4()), "--since", "2026-11-30T10:00"], "give the time zone"),
        ([], "--account"),
    ],
)
def test_replay_refuses_bad_arguments(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["replay", *arguments])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err
