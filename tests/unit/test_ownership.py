"""The ownership table (shared/db/ownership.py) against the schema and docs/architecture.md."""

from __future__ import annotations

import re
from pathlib import Path

from shared.db.ownership import ACCESS, EVERY_COLUMN, EVERY_TABLE, OWNERS, SERVICES, markdown_table
from shared.db.tables import Base

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
TABLES = Base.metadata.tables


def test_every_table_of_the_schema_has_exactly_one_owner_and_the_owner_inserts_its_rows() -> None:
    assert set(OWNERS) == set(TABLES), (
        f"shared/db/ownership.py OWNERS: no owner for {sorted(set(TABLES) - set(OWNERS))}, "
        f"no such table {sorted(set(OWNERS) - set(TABLES))}"
    )
    for table, owner in OWNERS.items():
        assert ACCESS[owner].writes[table].insert, f"{owner} owns {table} but may not insert into it"


def test_grants_name_real_tables_and_columns() -> None:
    for service in SERVICES:
        access = ACCESS[service]
        if access.reads != EVERY_TABLE:
            assert access.reads <= set(TABLES), f"{service} reads unknown tables"
        for table, writes in access.writes.items():
            assert table in TABLES, f"{service} writes unknown table {table}"
            if writes.update != EVERY_COLUMN:
                unknown = set(writes.update) - set(TABLES[table].columns.keys())
                assert not unknown, f"{service} updates unknown columns of {table}: {sorted(unknown)}"


def test_only_a_tables_owner_may_update_every_column_of_it() -> None:
    for service in SERVICES:
        for table, writes in ACCESS[service].writes.items():
            if OWNERS[table] != service:
                assert writes.update != EVERY_COLUMN, (
                    f"{service} may update all of {table}, which {OWNERS[table]} owns: name its columns"
                )
                assert not writes.delete or table == "outbox", f"{service} deletes {table}'s rows"


def test_the_ledger_may_not_write_the_apis_tables_and_the_api_not_the_ledgers_columns() -> None:
    ledger, api = ACCESS["ledger"].writes, ACCESS["api"].writes
    assert "users" not in ledger and "credentials" not in ledger
    assert api["broker_accounts"].update != EVERY_COLUMN
    assert not {"current_snapshot_id", "ledger_version"} & set(api["broker_accounts"].update)
    assert not {"snapshots", "snapshot_holdings", "transactions"} & set(api)


def test_architecture_doc_shows_the_ownership_table_of_the_code() -> None:
    text = ARCHITECTURE.read_text()
    found = re.search(r"^\| Table \| Owner \| Writes granted \|\n(?:^\|.*\|\n?)+", text, re.MULTILINE)
    assert found, "docs/architecture.md has no `| Table | Owner | Writes granted |` table"
    expected = markdown_table()
    assert found.group(0).strip() == expected, (
        "docs/architecture.md#who-writes-what differs from shared/db/ownership.py; paste:\n" + expected
    )
