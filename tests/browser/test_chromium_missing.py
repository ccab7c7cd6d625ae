"""Without Chromium the browser layer fails, saying what to install: it is never skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chromium import ChromiumUnavailable, start_chromium


def test_a_missing_chromium_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ChromiumUnavailable, match=r"not found; .*apt-get install chromium chromium-driver"):
        start_chromium(chromium=tmp_path / "chromium")
