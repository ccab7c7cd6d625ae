"""Schemathesis against the API on real Postgres: every phase (examples, coverage, fuzzing, stateful,
the last following the document's OpenAPI links), as a signed-up user. No server error, every
response as documented (status, schema, content type)."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import ApiResources, create_app
from services.user_admin import create_user
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.settings import Settings
from tests.support.waiting import eventually

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
MAX_EXAMPLES = 15


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_schemathesis_finds_nothing(
    engine: AsyncEngine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database_url=database_url,
        bus="memory",
        credentials_keys=SecretStr(CredentialCipher.generate_key()),
        # Limits off: a 429 is documented, but a fuzzer slowed to the limit would test little else.
        signup_rate_limit_per_hour=0,
        token_rate_limit_per_minute=0,
    )
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    app = create_app(settings, resources=ApiResources(engine=engine, bus=InMemoryBus(), cipher=cipher))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: asyncio.sleep(0, server.started), what="uvicorn to start", timeout_s=20)
        # An operator, so that the admin routes are fuzzed past their 403 too.
        token = await create_user(settings, "fuzzer@example.com", operator=True)
        junit = tmp_path / "junit.xml"
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "st"), "run", f"{base}/openapi.json",
            "--phases", "examples,coverage,fuzzing,stateful", "--checks", CHECKS,
            "--header", f"Authorization: Bearer {token}", "--max-examples", str(MAX_EXAMPLES),
            # Deleting its own user or revoking its own token (found through GET /v1/tokens) would
            # leave the rest of the run a wall of 401s; tests/unit/api covers both.
            "--exclude-operation-id", "delete_me", "--exclude-operation-id", "revoke_token",
            "--seed", "1", "--no-color", "--report", "junit", "--report-junit-path", str(junit),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
    finally:
        server.should_exit = True
        await serving
    text = output.decode(errors="replace")
    summary = re.search(r"Test cases:\s*(.*)", text)
    with capsys.disabled():  # shown in every run, not only a failing one
        print(f"\nschemathesis: {summary.group(1) if summary else 'no summary'}")
    assert process.returncode == 0, text[-8000:]
    assert summary is not None and "generated" in summary.group(1), text[-3000:]
