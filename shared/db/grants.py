"""Each service's Postgres role, granted exactly its row of the ownership table (`db roles`).

Idempotent: the role is created if missing (its password set again if not), everything it held in
the database is revoked, and its grants are made anew, all in one transaction, so a service never
sees a moment without them. Passwords go to the server as SCRAM-SHA-256 verifiers, never in
plaintext: the statement is safe to log, and nothing in it needs quoting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.ownership import ACCESS, EVERY_COLUMN, Service, reads_of

# A name we create roles under: plain lower-case identifiers only, so it never needs quoting rules.
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCRAM_ITERATIONS = 4096  # Postgres's own default (scram_iterations)
_TABLES = (
    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
    "AND c.relkind IN ('r', 'p')"
)


class RoleSetupError(ValueError):
    """A service's role cannot be set up as configured; the message says what to change."""


class MissingGrants(RuntimeError):
    """The role a service connects as lacks some of its grants: `db roles` was not run since the
    last `db upgrade` (or not with this role). Refusing to start beats dead-lettering every write."""


@dataclass(frozen=True)
class ServiceRole:
    """The role a service connects as, and the password it connects with."""

    service: Service
    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _ROLE_NAME.fullmatch(self.name):
            raise RoleSetupError(
                f"the {self.service}'s database user {self.name!r} must be lower-case letters, digits "
                "and underscores, starting with a letter or underscore"
            )
        if not self.password:
            raise RoleSetupError(f"the {self.service}'s database URL has no password")


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802, RFC 7677), in the form
    `CREATE ROLE .. PASSWORD` accepts as already encrypted."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_statements(
    service: Service, role: str, *, schema: str, sequences: Mapping[str, Sequence[str]]
) -> list[str]:
    """REVOKE everything `role` holds on the schema's tables and sequences, then GRANT `service`'s
    row of the ownership table. `sequences`: every table of the schema, with the sequences its
    columns draw from (a role that inserts into the table must use them)."""
    missing = sorted(set(ACCESS[service].writes) - set(sequences))
    if missing:
        raise RoleSetupError(f"the database has no table {', '.join(missing)}: run `db upgrade` first")
    who, where = quoted(role), quoted(schema)

    def on(table: str) -> str:
        return f"{where}.{quoted(table)}"

    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {where} FROM {who}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {where} FROM {who}",
    ]
    readable = sorted(reads_of(service, frozenset(sequences)) & set(sequences))
    statements.append(f"GRANT SELECT ON {', '.join(on(t) for t in readable)} TO {who}")
    for table, writes in sorted(ACCESS[service].writes.items()):
        privileges = [
            name for name, granted in (("INSERT", writes.insert), ("DELETE", writes.delete)) if granted
        ]
        if writes.update == EVERY_COLUMN:
            privileges.append("UPDATE")
        elif writes.update:
            privileges.append(f"UPDATE ({', '.join(quoted(c) for c in writes.update)})")
        statements.append(f"GRANT {', '.join(privileges)} ON {on(table)} TO {who}")
        if writes.insert:
            statements.extend(
                f"GRANT USAGE ON SEQUENCE {where}.{quoted(s)} TO {who}" for s in sorted(sequences[table])
            )
    return statements


async def grant_service_roles(engine: AsyncEngine, roles: Sequence[ServiceRole]) -> list[str]:
    """Create or update each role and set its grants, in one transaction; returns what was done,
    a line per role (no password in it)."""
    done = []
    async with engine.begin() as conn:
        owner = await conn.scalar(text("SELECT current_user"))
        database = await conn.scalar(text("SELECT current_database()"))
        schema = await conn.scalar(text("SELECT current_schema()"))
        sequences = await _tables_and_sequences(conn)
        for role in roles:
            if role.name == owner:
                raise RoleSetupError(
                    f"the {role.service} connects as {role.name}, the schema's owner: "
                    "give it a role of its own"
                )
            done.append(await _ensure_role(conn, role, database=database))
            for privilege, object_kind, name in (
                ("CONNECT", "DATABASE", database),
                ("USAGE", "SCHEMA", schema),
            ):
                held = await conn.scalar(
                    text(f"SELECT has_{object_kind.lower()}_privilege(:role, :name, :privilege)"),
                    {"role": role.name, "name": name, "privilege": privilege},
                )
                if not held:
                    await conn.exec_driver_sql(
                        f"GRANT {privilege} ON {object_kind} {quoted(name)} TO {quoted(role.name)}"
                    )
            for statement in grant_statements(role.service, role.name, schema=schema, sequences=sequences):
                await conn.exec_driver_sql(statement)
    return done


async def assert_service_grants(conn: AsyncConnection, service: Service) -> None:
    """Raise `MissingGrants` unless the current role may do all that `service` does (its reads and
    writes), in two round trips. A role that may do more (the schema's owner) passes."""
    tables = frozenset(await conn.scalars(text(_TABLES)))
    checks: list[tuple[str, str, str | None]] = [
        (t, "SELECT", None) for t in sorted(reads_of(service, tables))
    ]
    for table, writes in sorted(ACCESS[service].writes.items()):
        checks += [
            (table, p, None)
            for p, granted in (("INSERT", writes.insert), ("DELETE", writes.delete))
            if granted
        ]
        if writes.update == EVERY_COLUMN:
            checks.append((table, "UPDATE", None))
        else:
            checks += [(table, "UPDATE", column) for column in writes.update]
    parameters: dict[str, str] = {}
    calls = []
    for i, (table, privilege, column) in enumerate(checks):
        parameters |= {f"t{i}": table, f"p{i}": privilege}
        if column is None:
            calls.append(f"has_table_privilege(:t{i}, :p{i})")
        else:
            parameters[f"c{i}"] = column
            calls.append(f"has_column_privilege(:t{i}, :c{i}, :p{i})")
    held = (await conn.execute(text(f"SELECT {', '.join(calls)}"), parameters)).one()
    missing = [
        f"{privilege} on {table}" + ("" if column is None else f".{column}")
        for (table, privilege, column), granted in zip(checks, held, strict=True)
        if not granted
    ]
    if missing:
        role = await conn.scalar(text("SELECT current_user"))
        raise MissingGrants(
            f"the {service}'s database role {role} lacks {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            + ": run `portfolio-sync db roles` (after every `db upgrade`)"
        )


async def _ensure_role(conn: AsyncConnection, role: ServiceRole, *, database: str) -> str:
    found = await conn.execute(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = :name"), {"name": role.name}
    )
    existing = found.scalar_one_or_none()
    if existing:
        raise RoleSetupError(
            f"the {role.service}'s role {role.name} is a superuser: grants cannot restrict it"
        )
    verb = "CREATE" if existing is None else "ALTER"
    # A new role has no attribute but LOGIN (no superuser, no CREATEDB, no CREATEROLE: the defaults).
    # The verifier is base64, `$` and `:` only; exec_driver_sql, since text() would read `:x` as a bind.
    await conn.exec_driver_sql(
        f"{verb} ROLE {quoted(role.name)} WITH LOGIN PASSWORD '{scram_verifier(role.password)}'"
    )
    state = "created" if existing is None else "updated"
    return f"{role.service}: role {role.name} {state}, granted its writes in {database}"


async def _tables_and_sequences(conn: AsyncConnection) -> dict[str, list[str]]:
    """Every table of the current schema, with the sequences owned by its columns (serial, identity)."""
    tables: dict[str, list[str]] = {name: [] for name in await conn.scalars(text(_TABLES))}
    owned = await conn.execute(
        text(
            "SELECT t.relname, s.relname FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND t.relnamespace = current_schema()::regnamespace"
        )
    )
    for table, sequence in owned:
        tables.setdefault(table, []).append(sequence)
    return tables
