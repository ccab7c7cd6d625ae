"""`make test` installs Java 17, Maven and Chromium when missing (infra/install-test-deps)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "infra" / "install-test-deps"


def test_make_test_runs_the_install_step_first() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    test_rule = re.search(r"^test: (?P<prereqs>[^#\n]*)", makefile, re.MULTILINE)
    assert test_rule is not None and "test-deps" in test_rule["prereqs"].split()
    assert re.search(r"^test-deps:.*\n\tinfra/install-test-deps$", makefile, re.MULTILINE)


def _run_on_a_bare_path(
    tmp_path: Path, **env_vars: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script with a PATH holding the shell's basics but no java, mvn, chromium, docker or
    sudo, and an apt-get that only records its calls; return the run and the `install` calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    for tool in ("bash", "ls", "id", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    fake_apt = bin_dir / "apt-get"
    fake_apt.write_text(f'#!{shutil.which("bash")}\necho "$*" >> {calls}\n')
    fake_apt.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}}
    env.update(env_vars, PATH=str(bin_dir))

    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)

    recorded = calls.read_text().splitlines() if calls.exists() else []
    return result, [line for line in recorded if line.startswith("install")]


def test_missing_java_and_maven_are_installed_with_apt_get(tmp_path: Path) -> None:
    result, install = _run_on_a_bare_path(tmp_path)

    if os.geteuid() != 0:  # without root or sudo it says what to install, and fails
        assert result.returncode != 0 and "openjdk-17-jre-headless" in result.stderr
        return
    assert install, (result.stdout, result.stderr)
    assert {"openjdk-17-jre-headless", "maven", "chromium", "chromium-driver"} <= set(install[0].split())


def test_the_browser_is_installed_even_where_kafka_and_postgres_are_named(tmp_path: Path) -> None:
    result, install = _run_on_a_bare_path(
        tmp_path, KAFKA_BOOTSTRAP_SERVERS="kafka:9092", DATABASE_URL="postgresql+asyncpg://db/x"
    )

    if os.geteuid() != 0:
        assert result.returncode != 0 and "chromium-driver" in result.stderr
        return
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert [set(line.split()) - {"install", "-y", "-qq"} for line in install] == [
        {"chromium", "chromium-driver"}
    ]
