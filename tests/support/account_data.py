"""A browser test's user data, made through the live system's API (what the test is not about):
portfolios, statement accounts, imported statements."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.dashboard import Site
from tests.support.waiting import eventually


class UserApi:
    """The JSON API of a live system, as the user holding `token`."""

    def __init__(self, system: Site, token: str) -> None:
        self._system = system
        self._headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{self._system.base_url}/v1{path}",
            headers=self._headers | kwargs.pop("headers", {}),
            timeout=10,
            **kwargs,
        )
        response.raise_for_status()
        return None if response.status_code == 204 else response.json()

    def portfolio(self, name: str) -> str:
        return str(self.call("POST", "/portfolios", json={"name": name})["id"])

    def statement_account(self, portfolio: str, label: str) -> str:
        body = {"broker": "csv", "label": label}
        return str(self.call("POST", f"/portfolios/{portfolio}/accounts", json=body)["id"])

    def imported(self, account: str, statement: str) -> dict[str, Any]:
        """Upload `statement` and wait until the ledger has recorded it; the import's sync run."""
        accepted = self.call(
            "POST", f"/accounts/{account}/statements", content=statement, headers={"Content-Type": "text/csv"}
        )
        return self._recorded(account, accepted["request_id"])

    def synced(self, account: str) -> dict[str, Any]:
        """Sync now and wait until the ledger has recorded the snapshot; the sync run."""
        return self._recorded(account, self.call("POST", f"/accounts/{account}/sync")["request_id"])

    def until_account(self, account: str, condition: Callable[[dict[str, Any]], bool], *, what: str) -> None:
        async def holds() -> bool:
            return condition(self.call("GET", f"/accounts/{account}"))

        asyncio.run(eventually(holds, what=what))

    def _recorded(self, account: str, run_id: str) -> dict[str, Any]:
        async def recorded() -> dict[str, Any] | None:
            run: dict[str, Any] = self.call("GET", f"/accounts/{account}/sync-runs/{run_id}")
            return run if run["snapshot_status"] else None

        return asyncio.run(eventually(recorded, what=f"the run {run_id} recorded"))
