"""OpenAPI links: which response field feeds which operation's parameter.

Clients (and schemathesis's stateful phase) follow them from a new portfolio to its accounts, from
a new account to its credentials, syncs, statements, snapshots and holdings, and from a page of
snapshots to one snapshot.
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
# From a page of snapshots to the first one's detail (the account is the request's own).
_FROM_SNAPSHOT_PAGE = {
    "read_snapshot": {
        "account_id": "$request.path.account_id",
        "snapshot_id": "$response.body#/items/0/id",
    }
}


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
    snapshots = operations.get("list_snapshots", {}).get("responses", {}).get("200")
    if snapshots is not None and "read_snapshot" in operations:
        snapshots["links"] = {
            target: {"operationId": target, "parameters": parameters}
            for target, parameters in _FROM_SNAPSHOT_PAGE.items()
        }
    return document


def name_broker_codes(document: dict[str, Any], codes: list[str]) -> dict[str, Any]:
    """List the deployment's broker codes as the enum of an account's `broker` (in place), so that
    clients and fuzzers know the values that are not a 422."""
    schema = document.get("components", {}).get("schemas", {}).get("AccountCreate")
    if schema is not None:
        schema["properties"]["broker"]["enum"] = codes
    return document
