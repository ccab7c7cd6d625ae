"""An operator signs in and sees, on one page, what the workers are doing: two fetchers alive, the
brokers with their outcomes, failures by kind, stuck runs, dead letters and consumer lag; and acts
there: pauses and resumes a broker, replays dead letters."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from shared import topics
from shared.bus.port import OutgoingMessage
from shared.events import utc_now
from shared.fetcher_heartbeats import FetcherHeartbeat
from tests.support.dashboard import read, sign_in, until
from tests.support.live_system import LiveSystem
from tests.support.screenshots import screenshot
from tests.support.waiting import eventually

SNAPSHOT_DLQ = topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)


def test_an_operator_sees_two_fetchers_and_every_panel_and_acts(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    operator = live_system.operator(email)
    _another_fetcher_beats(live_system)
    _one_sync_succeeds_and_one_fails(live_system, operator)
    _a_malformed_snapshot_is_dead_lettered(live_system)

    sign_in(page, live_system, operator, "operator.html")

    until(page, lambda b: _text(b, "updated").startswith("Updated"), what="every panel drawn")
    fetcher_rows = _rows(page, "fetchers", at_least=2)
    assert fetcher_rows is not None, _text(page, "fetchers")
    assert [row[4] for row in fetcher_rows] == ["Alive", "Alive"]
    assert sorted(row[2] for row in fetcher_rows) == sorted(["browser-test-host", socket.gethostname()])
    brokers = {row[0].split()[-1]: row for row in _rows(page, "brokers") or []}
    assert brokers["sim"][1] == "Running" and brokers["sim"][2] == "2"
    failures = {row[0].split()[0]: row for row in _rows(page, "failures") or []}
    assert "auth" in failures and "market" in failures["auth"][4]
    assert SNAPSHOT_DLQ in _text(page, "dead-letters")
    assert "records not yet processed" in _text(page, "lag")
    assert "No stuck run" in _text(page, "stuck-runs")  # the scheduler requests them again at once
    assert read(page, lambda b: b.find_element(By.ID, "outcomes-chart").is_displayed(), what="the chart")

    def unnamed(b: webdriver.Chrome) -> list[str]:
        controls = b.find_elements(By.CSS_SELECTOR, "#main :is(input, button, canvas, a)")
        shown = [c for c in controls if c.is_displayed() and not c.accessible_name.strip()]
        return [str(c.get_attribute("outerHTML")) for c in shown]

    assert read(page, unnamed, what="the controls' names") == []
    screenshot(page, "operator")
    screenshot(page, "operator-phone", phone=True)
    page.execute_script("document.getElementById('outcomes-title').scrollIntoView()")
    screenshot(page, "operator-outcomes")

    Select(page.find_element(By.ID, "outcomes-broker")).select_by_value("sim")
    page.find_element(By.CSS_SELECTOR, "#outcomes summary").click()
    hourly = until(page, lambda b: _rows(b, "outcomes", at_least=24), what="the chart's numbers")
    assert sum(int(row[1]) for row in hourly) >= 1 and sum(int(row[2]) for row in hourly) >= 1

    # By keyboard: the reason, then Enter.
    page.find_element(By.ID, "pause-reason-zerodha").send_keys("Kite <b>outage</b> since 09:20", Keys.ENTER)
    until(page, lambda b: _broker_state(b, "zerodha").startswith("Paused"), what="zerodha paused")
    assert _broker_state(page, "zerodha").endswith("Kite <b>outage</b> since 09:20")  # as text
    page.find_element(By.CSS_SELECTOR, "button[aria-label='Resume Zerodha Kite Connect']").click()
    until(page, lambda b: _broker_state(b, "zerodha") == "Running", what="zerodha resumed")

    page.find_element(By.CSS_SELECTOR, f"button[aria-label='Replay {SNAPSHOT_DLQ}']").click()
    said = until(page, lambda b: "replayed" in _text(b, "status") and _text(b, "status"), what="the replay")
    assert said.startswith(f"{SNAPSHOT_DLQ}: 1 replayed")


def test_a_user_who_is_not_an_operator_is_told_the_page_is_not_theirs(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    sign_in(page, live_system, live_system.sign_up(email), "operator.html")

    said = until(page, lambda b: _text(b, "status"), what="the page's answer")
    assert said.startswith("This page is for operators")
    assert not page.find_element(By.ID, "operator-panels").is_displayed()


def _another_fetcher_beats(system: LiveSystem) -> None:
    """A second fetcher of `sim`, as one on another host announces itself on the bus."""
    now = utc_now()
    beat = FetcherHeartbeat(
        fetcher_id="browser-test-host:4242/sim",
        broker="sim",
        host="browser-test-host",
        pid=4242,
        started_at=now,
        sent_at=now,
        in_flight=0,
        handled=7,
    )
    system.run(system.system.bus.publish([beat.message()]))


def _one_sync_succeeds_and_one_fails(system: LiveSystem, operator: str) -> None:
    user = {"Authorization": f"Bearer {system.sign_up(f'user-{uuid.uuid4().hex[:8]}@example.com')}"}
    with httpx.Client(base_url=f"{system.base_url}/v1", headers=user, timeout=10) as api:
        portfolio = _ok(api.post("/portfolios", json={"name": "Operator test"}))
        runs = []
        for market in ("in", "mars"):  # the simulated broker rejects a market it does not know
            account = _ok(
                api.post(f"/portfolios/{portfolio['id']}/accounts", json={"broker": "sim", "label": market})
            )
            _ok(api.put(f"/accounts/{account['id']}/credentials", json={"credentials": {"market": market}}))
            runs.append(_ok(api.post(f"/accounts/{account['id']}/sync"))["request_id"])
    _until_runs_end(system, operator, runs)


def _until_runs_end(system: LiveSystem, operator: str, run_ids: list[str]) -> None:
    async def ended() -> bool:
        async with httpx.AsyncClient(base_url=f"{system.base_url}/v1", timeout=10) as api:
            page = await api.get(
                "/admin/sync-runs?limit=500", headers={"Authorization": f"Bearer {operator}"}
            )
        status = {run["id"]: run["status"] for run in page.json()["items"]}
        return all(status.get(run) in {"succeeded", "failed"} for run in run_ids)

    system.run(eventually(ended, what=f"runs {run_ids} to end"))


def _a_malformed_snapshot_is_dead_lettered(system: LiveSystem) -> None:
    garbage = OutgoingMessage(topics.HOLDINGS_SNAPSHOTS, str(uuid.uuid4()), b"not a snapshot")
    system.run(system.system.bus.publish([garbage]))

    async def dead_lettered() -> bool:
        return await system.system.bus.count(SNAPSHOT_DLQ) > 0

    system.run(eventually(dead_lettered, what="the snapshot to be dead-lettered"))


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, (response.request.url, response.status_code, response.text)
    return response.json() if response.content else None


# The page redraws its panels every few seconds: each read is read again if a redraw interrupted it.
def _rows(browser: webdriver.Chrome, panel: str, *, at_least: int = 1) -> list[list[str]] | None:
    def cells(b: webdriver.Chrome) -> list[list[str]]:
        return [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in b.find_elements(By.CSS_SELECTOR, f"#{panel} tbody tr")
        ]

    rows = read(browser, cells, what=f"the {panel} panel")
    return rows if len(rows) >= at_least and len(rows[0]) > 1 else None


def _text(browser: webdriver.Chrome, element_id: str) -> str:
    return read(browser, lambda b: str(b.find_element(By.ID, element_id).text), what=f"#{element_id}")


def _broker_state(browser: webdriver.Chrome, code: str) -> str:
    rows = _rows(browser, "brokers") or []
    return next(row[1] for row in rows if row[0].split()[-1] == code)
