"""The transactions page: the trades two imports derived, filtered by symbol and paged."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.support.account_data import UserApi
from tests.support.dashboard import sign_in, until
from tests.support.live_system import LiveSystem
from tests.support.screenshots import screenshot

HEADER = "symbol,quantity,average_price,currency\n"
BEFORE = {"AAPL": 12, "MSFT": 5, "GOOGL": 3, "VTI": 10, "BND": 4, "NVDA": 7}
AFTER = {"AAPL": 15, "MSFT": 2, "GOOGL": 9, "VTI": 4, "BND": 5, "NVDA": 1}


def _statement(quantities: dict[str, int]) -> str:
    return HEADER + "".join(f"{symbol},{count},100,USD\n" for symbol, count in quantities.items())


def _rows(browser: webdriver.Chrome) -> list[list[str]]:
    """The table's rows as (when, account, symbol, exchange, kind, quantity, price, origin)."""
    rows = browser.find_elements(By.CSS_SELECTOR, "#transactions table.data tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def _page_says(browser: webdriver.Chrome, start: str) -> bool:
    return browser.find_element(By.ID, "page-number").text.startswith(start)


def test_transactions_of_two_imports_are_listed_filtered_and_paged(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    user = UserApi(live_system, token)
    account = user.statement_account(user.portfolio("Family"), "Demat")
    user.imported(account, _statement(BEFORE))
    assert user.imported(account, _statement(AFTER))["snapshot_status"] == "applied"

    sign_in(page, live_system, token, "transactions.html")
    until(page, lambda b: _page_says(b, "Page 1: 12 transaction(s)"), what="the first page")
    trades = {(row[2], row[4], row[5]) for row in _rows(page)}
    assert {(s, "opening", str(n)) for s, n in BEFORE.items()} < trades
    assert {("AAPL", "buy", "3"), ("MSFT", "sell", "3"), ("NVDA", "sell", "6")} < trades
    assert {row[1] for row in _rows(page)} == {"Demat"} and {row[7] for row in _rows(page)} == {"derived"}
    screenshot(page, "transactions")

    page.find_element(By.ID, "filter-symbol").send_keys("AAPL")
    Select(page.find_element(By.ID, "filter-account")).select_by_visible_text("Demat")
    page.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    until(page, lambda b: _page_says(b, "Page 1: 2 transaction(s)."), what="the AAPL trades")
    assert [(row[2], row[4]) for row in _rows(page)] == [("AAPL", "buy"), ("AAPL", "opening")]  # newest first
    assert "symbol=AAPL" in page.current_url and f"account_id={account}" in page.current_url

    page.find_element(By.ID, "filter-symbol").clear()
    Select(page.find_element(By.ID, "filter-limit")).select_by_visible_text("10")
    page.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    until(page, lambda b: _page_says(b, "Page 1: 10 transaction(s), more"), what="a first page of ten")
    first = _rows(page)
    page.find_element(By.ID, "next-page").click()
    until(page, lambda b: _page_says(b, "Page 2: 2 transaction(s)."), what="the second page")
    assert not page.find_element(By.ID, "next-page").is_displayed()
    assert {tuple(row) for row in _rows(page)}.isdisjoint({tuple(row) for row in first})
    page.find_element(By.ID, "previous-page").click()
    until(page, lambda b: _page_says(b, "Page 1: 10"), what="the first page again")
    assert _rows(page) == first
