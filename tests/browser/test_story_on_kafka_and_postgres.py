"""The dashboard on the deployment `make up` runs: every service its own process, real Kafka and
Postgres, two fetchers of the simulated broker. A new user's whole story through the pages — sign
up, an account synced, the holdings and a chart with the synced numbers, a statement's bad line, a
held statement reviewed and accepted — and an operator who sees the two fetchers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.account_data import UserApi
from tests.support.dashboard import (
    add_sim_account,
    chart_data,
    holdings_loaded,
    holdings_rows,
    run_ended,
    sign_in,
    sign_up_in_browser,
    until,
)
from tests.support.infra import KafkaService
from tests.support.page_problems import page_problems
from tests.support.service_stack import RunningStack, service_stack, wait_for_api

HEADER = "symbol,quantity,average_price,currency\n"
FIVE_HOLDINGS = HEADER + "AAPL,12,145.30,USD\nMSFT,5,300,USD\nGOOGL,3,100,USD\nVTI,10,200,USD\nBND,4,70,USD\n"


@pytest.fixture
def stack(kafka: KafkaService, database_url: str, tmp_path: Path) -> Iterator[RunningStack]:
    with service_stack(
        kafka, database_url, tmp_path, fetchers=2, env={"FETCHER_HEARTBEAT_SECONDS": "0.5"}
    ) as running:
        yield running


@pytest.fixture
def stack_page(browser: webdriver.Chrome, stack: RunningStack) -> Iterator[webdriver.Chrome]:
    page_problems(browser, stack.base_url)  # what earlier tests left in the logs
    yield browser
    problems = page_problems(browser, stack.base_url)
    if browser.current_url.startswith("http"):
        browser.execute_script("window.sessionStorage.clear()")
    browser.get("about:blank")
    assert not problems, "the pages did what no dashboard page may:\n" + "\n".join(problems)


def test_a_users_story_and_an_operators_look_on_kafka_and_postgres(
    stack: RunningStack, stack_page: webdriver.Chrome, tmp_path: Path
) -> None:
    page = stack_page
    asyncio.run(_wait_for_api(stack))

    # Sign up, create a portfolio, add a simulated-broker account, sync it now.
    sign_up_in_browser(page, stack, f"story-{uuid.uuid4().hex[:8]}@e2e.test", "accounts.html")
    token = page.execute_script("return sessionStorage.getItem('portfolio-sync.token')")
    user = UserApi(stack, token)
    page.find_element(By.ID, "portfolio-name").send_keys("Story")
    page.find_element(By.CSS_SELECTOR, "#new-portfolio button[type=submit]").click()
    card = add_sim_account(page, "US stocks", "us")
    card.find_element(By.CSS_SELECTOR, "button.sync-now").click()
    live = card.find_element(By.CSS_SELECTOR, "p.status[aria-live=polite]")
    assert until(page, lambda _: run_ended(live), what="the sync's end").startswith("Sync succeeded")

    # The holdings table and the allocation chart show what the API says was synced.
    page.get(f"{stack.base_url}/ui/holdings.html")
    until(page, holdings_loaded, what="the holdings")
    [portfolio] = user.call("GET", "/portfolios")["items"]
    synced = user.call("GET", f"/portfolios/{portfolio['id']}/holdings")
    assert synced, "the sync recorded no holdings"
    rows = holdings_rows(page)
    assert sorted((row[0], row[4]) for row in rows) == sorted((h["symbol"], h["quantity"]) for h in synced)
    top = chart_data(page, "#top-holdings canvas")
    values = sorted((Decimal(h["market_value"]) for h in synced), reverse=True)[:10]
    assert top["datasets"][0]["data"] == pytest.approx([float(v) for v in values])

    # A statement with a bad line: the problem shows beside that line.
    csv_account = user.statement_account(portfolio["id"], "Demat")
    statement = tmp_path / "statement.csv"
    statement.write_text(HEADER + "AAPL,12,145.30,USD\nMSFT,abc,300,USD\n")
    page.get(f"{stack.base_url}/ui/statements.html?account={csv_account}")
    until(page, lambda b: b.find_element(By.ID, "statement-file"), what="the upload form")
    page.find_element(By.ID, "statement-file").send_keys(str(statement))
    page.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()
    [bad] = until(page, lambda b: b.find_elements(By.CSS_SELECTOR, "li.bad-line"), what="the bad line")
    assert bad.get_attribute("data-line") == "3"
    assert "quantity 'abc' is not a number" in bad.find_element(By.CSS_SELECTOR, ".problem").text

    # A statement that drops most positions is held; the owner reviews it and accepts it.
    assert user.imported(csv_account, FIVE_HOLDINGS)["snapshot_status"] == "applied"
    held = user.imported(csv_account, HEADER + "AAPL,15,145.30,USD\n")
    assert held["snapshot_status"] == "held"
    page.get(f"{stack.base_url}/ui/review.html?account={csv_account}")
    until(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#review table.data tbody tr"), what="the review")
    page.find_element(By.XPATH, "//button[starts-with(., 'Accept')]").click()
    until(
        page,
        lambda b: "Accepted: the snapshot is now" in b.find_element(By.ID, "status").text,
        what="applied",
    )
    assert [(h["symbol"], h["quantity"]) for h in user.call("GET", f"/accounts/{csv_account}/holdings")] == [
        ("AAPL", "15")
    ]

    # An operator sees both fetcher processes alive.
    page.execute_script("sessionStorage.clear()")
    email = f"ops-{uuid.uuid4().hex[:8]}@e2e.test"
    operator = stack.services.run("users", "create", "--operator", email).strip().splitlines()[-1]
    sign_in(page, stack, operator, "operator.html")

    def fetchers_alive(browser: webdriver.Chrome) -> bool:
        rows = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#fetchers tbody tr")
        ]
        return [row[4] for row in rows if len(row) > 4] == ["Alive", "Alive"]

    until(page, fetchers_alive, what="two fetchers alive")
    stack.services.assert_alive()


async def _wait_for_api(stack: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=5) as http:
        await wait_for_api(stack.services, http)
