"""OpenAPI links: which response field feeds which operation's parameter.

Clients (and schemathesis's stateful phase) follow them from a new portfolio to its accounts, and
from a new account to its credentials, syncs, statements, snapshots and holdings.
"""

from __future__ import annotations

from typing import Any

_FROM_PORTFOLIO = {
    "create_account": "portfolio_id",
    "list_accounts": "portfolio_id",
    "read_portfolio": "portfolio_id",
    "portfolio_holdings": "portfolio_id",
}
_FROM_ACCOUNT = {
    "read_account": "account_id",
    "put_credentials": "account_id",
    "sync_now": "account_id",
    "list_sync_runs": "account_id",
    "import_statement": "account_id",
    "list_snapshots": "account_id",
    "account_holdings": "account_id",
}
_SOURCES = {"create_portfolio": ("201", _FROM_PORTFOLIO), "create_account": ("201", _FROM_ACCOUNT)}


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """Add the links to an OpenAPI document (in place), naming only operations it has."""
    operations = {
        operation["operationId"]: operation
        for path in document.get("paths", {}).values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    for source, (code, targets) in _SOURCES.items():
        response = operations.get(source, {}).get("responses", {}).get(code)
        if response is None:
            continue
        response["links"] = {
            target: {"operationId": target, "parameters": {parameter: "$response.body#/id"}}
            for target, parameter in targets.items()
            if target in operations
        }
    return document
