"""The fast reads' statements (services/api/fast_reads.py) are SQLAlchemy's own, compiled once: each
value given lands on its `$n`, each constant of the statement on its own. Run on Postgres in
tests/integration/test_api_fast_reads_on_postgres.py."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, literal, select

from services.api.fast_reads import CompiledStatement, _token_check_and_holdings
from services.api.storage_callers import token_check_and_holdings
from services.api.storage_history import holdings_at_statement
from shared.db.tables import Portfolio, SnapshotStatus


def _argument_after(statement: CompiledStatement, arguments: list[object], sql_before: str) -> object:
    """The argument of the placeholder right after `sql_before` in the statement's SQL."""
    found = re.search(re.escape(sql_before) + r" \$(\d+)", statement.sql)
    assert found is not None, sql_before
    return arguments[int(found.group(1)) - 1]


def test_given_values_and_constants_land_on_their_placeholders() -> None:
    statement = CompiledStatement(
        holdings_at_statement(True, True, lateral=True), ["owner_id", "scope_id", "at"]
    )
    owner, portfolio, at = uuid.uuid4(), uuid.uuid4(), datetime(2026, 5, 4, 12, tzinfo=UTC)
    arguments = statement.arguments({"owner_id": owner, "scope_id": portfolio, "at": at})
    assert len(arguments) == len(set(re.findall(r"\$(\d+)", statement.sql)))
    assert _argument_after(statement, arguments, "portfolios.user_id =") == owner
    assert _argument_after(statement, arguments, "broker_accounts.portfolio_id =") == portfolio
    assert _argument_after(statement, arguments, "snapshots_1.taken_at <=") == at
    # The valid statuses, a constant of the statement, expanded into one placeholder each.
    statuses = re.search(r"snapshots_1\.status IN \(([^)]*)\)", statement.sql)
    assert statuses is not None
    numbers = re.findall(r"\$(\d+)", statuses.group(1))
    assert {arguments[int(n) - 1] for n in numbers} == set(SnapshotStatus.VALID)


def test_the_sql_has_asyncpg_placeholders() -> None:
    statement = CompiledStatement(
        select(Portfolio.id, literal(7)).where(Portfolio.name == bindparam("name")), ["name"]
    )
    arguments = statement.arguments({"name": "Main"})
    assert _argument_after(statement, arguments, "portfolios.name =") == "Main"
    assert _argument_after(statement, arguments, "SELECT portfolios.id,") == 7
    assert len(arguments) == 2


def test_a_value_the_statement_does_not_take_is_refused() -> None:
    with pytest.raises(ValueError, match="owner"):
        CompiledStatement(select(Portfolio.id).where(Portfolio.name == bindparam("name")), ["name", "owner"])


def test_the_token_check_and_the_holdings_are_one_statement_with_each_value_in_place() -> None:
    statement = _token_check_and_holdings(True, False, True)
    token_hash, account, at = "f" * 64, uuid.uuid4(), datetime(2026, 5, 4, 12, tzinfo=UTC)
    window_start = datetime(2026, 5, 4, 11, 59, tzinfo=UTC)
    arguments = statement.arguments(
        {"token_hash": token_hash, "now": at, "scope_id": account, "at": at, "window_start": window_start}
    )
    assert _argument_after(statement, arguments, "api_tokens.token_hash =") == token_hash
    assert _argument_after(statement, arguments, "broker_accounts.id =") == account
    assert _argument_after(statement, arguments, "snapshots_1.taken_at <=") == at
    # The holdings' owner is the token's user, not a value given: no owner_id to give.
    assert "portfolios.user_id = (SELECT caller.user_id \nFROM caller)" in statement.sql
    assert statement.sql.startswith("WITH caller AS")


@pytest.mark.parametrize("whole_portfolio", [False, True])
def test_the_holdings_come_back_as_one_body_column_after_the_token_check(whole_portfolio: bool) -> None:
    statement = token_check_and_holdings(True, whole_portfolio, False)

    assert [column.key for column in statement.selected_columns][5:] == ["body"]
    assert len(statement.selected_columns) == 6
    # A portfolio's lines in Python's (code-point) order, whatever the database's collation.
    compiled = _token_check_and_holdings(True, whole_portfolio, False).sql
    assert ('shares.symbol COLLATE "C"' in compiled) is whole_portfolio
