"""Each service's database role: which URL a service uses, the roles `db roles` makes from the
settings, and the GRANTs it sends (on real Postgres: tests/integration/test_service_roles_on_postgres.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.cli import _parser
from services.operations import service_roles
from shared.db.grants import RoleSetupError, ServiceRole, grant_statements, scram_verifier
from shared.db.tables import Base
from shared.settings import Settings

OWNER = "postgresql+asyncpg://portfolio:secret@db:5432/portfolio_sync"
SEQUENCES = {
    "alembic_version": [],
    **{name: (["outbox_id_seq"] if name == "outbox" else []) for name in Base.metadata.tables},
}


def _settings(**urls: str) -> Settings:
    return Settings(database_url=OWNER, **urls)  # type: ignore[arg-type]


def test_a_service_uses_its_own_url_when_set_and_database_url_otherwise() -> None:
    settings = _settings(ledger_database_url="postgresql+asyncpg://portfolio_ledger:l@db:5432/portfolio_sync")
    assert settings.service_database_url("ledger").startswith("postgresql+asyncpg://portfolio_ledger:")
    assert settings.service_database_url("api") == OWNER
    assert settings.service_database_url("scheduler") == OWNER


def test_roles_come_from_the_services_urls() -> None:
    settings = _settings(
        api_database_url="postgresql+asyncpg://portfolio_api:a@db:5432/portfolio_sync",
        ledger_database_url="postgresql+asyncpg://portfolio_ledger:l@db:5432/portfolio_sync",
    )
    assert service_roles(settings) == [
        ServiceRole("api", "portfolio_api", "a"),
        ServiceRole("ledger", "portfolio_ledger", "l"),
    ]
    assert service_roles(_settings()) == []


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("postgresql+asyncpg://portfolio:other@db:5432/portfolio_sync", "a user of its own"),
        ("postgresql+asyncpg://portfolio_api:a@db:5432/other", "names database 'other'"),
        ("postgresql+asyncpg://portfolio_api@db:5432/portfolio_sync", "no password"),
        ("postgresql+asyncpg://Robert%27;drop:a@db:5432/portfolio_sync", "lower-case letters"),
    ],
)
def test_roles_that_would_not_restrict_anything_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(RoleSetupError, match=complaint):
        service_roles(_settings(api_database_url=url))


def test_a_role_never_shows_its_password() -> None:
    assert "hunter2" not in repr(ServiceRole("api", "portfolio_api", "hunter2"))


def test_the_password_goes_to_postgres_as_a_scram_verifier() -> None:
    salt = b"0123456789abcdef"
    verifier = scram_verifier("hunter2", salt=salt)
    assert "hunter2" not in verifier
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt64 = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert method == "SCRAM-SHA-256" and base64.b64decode(salt64) == salt
    salted = hashlib.pbkdf2_hmac("sha256", b"hunter2", salt, int(iterations))
    assert stored_key == hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    assert server_key == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert scram_verifier("hunter2") != scram_verifier("hunter2"), "a fresh salt each time"


def test_grants_start_from_nothing_and_give_the_ledger_only_its_writes() -> None:
    statements = grant_statements("ledger", "portfolio_ledger", schema="public", sequences=SEQUENCES)
    assert statements[:2] == [
        'REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "portfolio_ledger"',
        'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "public" FROM "portfolio_ledger"',
    ]
    writes = [s for s in statements[2:] if not s.startswith("GRANT SELECT")]
    assert not [s for s in writes if '"users"' in s or '"credentials"' in s]
    [accounts] = [s for s in writes if '"broker_accounts"' in s]
    assert accounts.startswith('GRANT UPDATE ("current_snapshot_id", ')
    assert 'GRANT USAGE ON SEQUENCE "public"."outbox_id_seq" TO "portfolio_ledger"' in statements
    [reads] = [s for s in statements if s.startswith("GRANT SELECT")]
    assert '"alembic_version"' in reads and '"users"' not in reads


def test_grants_need_the_tables_to_exist() -> None:
    with pytest.raises(RoleSetupError, match="db upgrade"):
        grant_statements("api", "portfolio_api", schema="public", sequences={"users": []})


def test_the_cli_has_db_roles() -> None:
    assert _parser().parse_args(["db", "roles"]).db_command == "roles"


async def test_db_roles_needs_postgres_and_does_nothing_without_service_urls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.operations import grant_database_roles

    assert await grant_database_roles(Settings(database_url="sqlite+aiosqlite:///x.db")) == 2
    assert "need Postgres" in capsys.readouterr().err
    assert await grant_database_roles(_settings()) == 0
    assert "nothing to grant" in capsys.readouterr().out
