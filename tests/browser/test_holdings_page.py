"""The holdings page, where sign-in lands: a user whose `sim` accounts synced sees the synced numbers in
the table, the allocation charts and the value over time; sorts and filters by keyboard; markup in a
symbol, a label or a portfolio's name shows as text and runs nothing; a user with nothing yet is told
what to do next."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from tests.support.dashboard import chart_data, holdings_loaded, holdings_rows, sign_in, until
from tests.support.live_system import LiveSystem
from tests.support.screenshots import screenshot
from tests.support.waiting import eventually

# Scheduled once at creation, then not for a year: the test's own syncs are all there is.
RARELY = 366 * 24 * 3600
VALUE_COLUMN = 7  # Symbol, Exchange, Account(s), Currency, Quantity, Average price, Last price, Value


def test_a_synced_user_sees_the_synced_numbers_in_the_table_and_the_charts(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    with _api(live_system, token) as api:
        portfolio = _ok(api.post("/portfolios", json={"name": "Main"}))["id"]
        trading = _synced_account(live_system, api, portfolio, "Trading", market="")  # INR and USD
        long_term = _synced_account(live_system, api, portfolio, "Long term", market="in")
        _sync(live_system, api, trading)  # a second snapshot: the value over time has two points

        sign_in(page, live_system, token, "holdings.html")
        until(page, holdings_loaded, what="the holdings")
        consolidated = _ok(api.get(f"/portfolios/{portfolio}/holdings"))
        per_account = {
            label: _ok(api.get(f"/accounts/{account}/holdings"))
            for label, account in (("Trading", trading), ("Long term", long_term))
        }

    rows = holdings_rows(page)
    assert sorted(row[0] for row in rows) == sorted(line["symbol"] for line in consolidated)
    shown_values = {(row[0], row[1]): row[VALUE_COLUMN] for row in rows}
    for line in consolidated:
        expected = _money(page, Decimal(line["market_value"]), line["currency"])
        assert shown_values[(line["symbol"], line["exchange"])] == expected

    currency = page.find_element(By.ID, "currency").get_attribute("value")
    assert currency in {"INR", "USD"}
    in_currency = [line for line in consolidated if line["currency"] == currency]
    total = sum((Decimal(line["market_value"]) for line in in_currency), Decimal(0))
    assert _footer(page)[f"Total in {currency}"][0] == _money(page, total, currency)

    top = chart_data(page, "#top-holdings canvas")
    by_value = sorted(in_currency, key=lambda line: Decimal(line["market_value"]), reverse=True)[:10]
    assert top["labels"] == [f"{line['symbol']} ({line['exchange']})" for line in by_value]
    assert top["datasets"][0]["data"] == [float(line["market_value"]) for line in by_value]

    # Each account's part of the table: its quantities at the table's (freshest) prices.
    by_account = chart_data(page, "#by-account canvas")
    labels = {trading: "Trading", long_term: "Long term"}
    expected_by_account: dict[str, Decimal] = {}
    for line in in_currency:
        for share in line["accounts"]:
            label = labels[share["account_id"]]
            worth = Decimal(share["quantity"]) * Decimal(line["last_price"])
            expected_by_account[label] = expected_by_account.get(label, Decimal(0)) + worth
    shown_by_account = dict(zip(by_account["labels"], by_account["datasets"][0]["data"], strict=True))
    assert shown_by_account == pytest.approx({label: float(v) for label, v in expected_by_account.items()})
    by_type = chart_data(page, "#by-asset-type canvas")
    assert sum(by_type["datasets"][0]["data"]) == pytest.approx(float(total))
    by_currency = chart_data(page, "#by-currency canvas")
    assert dict(zip(by_currency["labels"], by_currency["datasets"][0]["data"], strict=True)) == {
        code: sum(1 for line in consolidated if line["currency"] == code)
        for code in {line["currency"] for line in consolidated}
    }

    # The latest point: each account's positions at the price its own last snapshot reported.
    history = _history(page)
    assert history and history[-1]["y"] == pytest.approx(
        float(
            sum(
                (
                    _worth(line)
                    for lines in per_account.values()
                    for line in lines
                    if line["currency"] == currency
                ),
                Decimal(0),
            )
        )
    )
    screenshot(page, "holdings")
    screenshot(page, "holdings-phone", phone=True)
    page.execute_script("document.getElementById('allocation-title').scrollIntoView()")
    screenshot(page, "holdings-charts")

    range_picker = page.find_element(By.ID, "range")
    range_picker.send_keys("All")  # by keyboard: the option starting with what is typed
    until(page, lambda b: len(_history(b)) >= 2, what="both syncs' points over the whole history")


def test_the_table_sorts_and_filters_by_keyboard(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    with _api(live_system, token) as api:
        portfolio = _ok(api.post("/portfolios", json={"name": "Main"}))["id"]
        _synced_account(live_system, api, portfolio, "Trading", market="")
        side = _ok(api.post("/portfolios", json={"name": "Side"}))["id"]
        _imported_account(live_system, api, side, "Statements", symbol="ONLYHERE")
    sign_in(page, live_system, token, "holdings.html")
    until(page, holdings_loaded, what="the holdings")

    value_header = page.find_elements(By.CSS_SELECTOR, "#holdings-table thead button.sort")[VALUE_COLUMN]
    _tab_to(page, value_header)
    value_header.send_keys(Keys.ENTER)
    ascending = [_number(row[VALUE_COLUMN]) for row in holdings_rows(page)]
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    assert _sort_state(page, VALUE_COLUMN) == "ascending"
    page.switch_to.active_element.send_keys(Keys.ENTER)
    assert [_number(row[VALUE_COLUMN]) for row in holdings_rows(page)] == sorted(ascending, reverse=True)
    assert _sort_state(page, VALUE_COLUMN) == "descending"

    first = holdings_rows(page)[0]
    _tab_to(page, page.find_element(By.ID, "filter"))
    page.switch_to.active_element.send_keys(first[0])
    rows = holdings_rows(page)
    assert [row[0] for row in rows] == [first[0]]
    assert list(_footer(page)) == [f"Total in {first[3]}"]  # totals of what the filter shows
    assert _footer(page)[f"Total in {first[3]}"][0] == first[VALUE_COLUMN]

    _tab_to(page, page.find_element(By.ID, "portfolio"))
    page.switch_to.active_element.send_keys("Side")  # the other portfolio, picked by keyboard
    until(
        page, lambda b: [row[0] for row in holdings_rows(b)] == ["ONLYHERE"], what="the other portfolio alone"
    )
    assert page.current_url.endswith(f"holdings.html?portfolio={side}")


def test_markup_in_a_symbol_a_label_or_a_portfolio_name_shows_as_text_and_runs_nothing(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    symbol = "<script>alert(1)</script>"
    label = '<img src="x" onerror="alert(2)">'
    name = "<b onmouseover=alert(3)>Mine</b>"
    token = live_system.sign_up(email)
    with _api(live_system, token) as api:
        portfolio = _ok(api.post("/portfolios", json={"name": name}))["id"]
        _imported_account(live_system, api, portfolio, label, symbol=symbol)

    sign_in(page, live_system, token, "holdings.html")
    until(page, holdings_loaded, what="the holdings")

    [row] = holdings_rows(page)
    assert row[0] == symbol.upper()  # statements upper-case symbols: still the characters, not a tag
    assert row[2] == label
    figures = page.find_element(By.CSS_SELECTOR, "#by-account .figures").text
    assert label in figures
    options = [o.text for o in page.find_elements(By.CSS_SELECTOR, "#portfolio option")]
    assert name in options
    assert (
        page.execute_script("return document.querySelectorAll('main img, main b, main script').length") == 0
    )
    try:
        alert = page.switch_to.alert.text
    except NoAlertPresentException:
        alert = None
    assert alert is None


def test_all_portfolios_together_merge_an_instrument_held_in_two_of_them(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    with _api(live_system, token) as api:
        first = _ok(api.post("/portfolios", json={"name": "First"}))["id"]
        _imported_account(live_system, api, first, "Old statement", symbol="SAME", line="5,10,12")
        second = _ok(api.post("/portfolios", json={"name": "Second"}))["id"]
        _imported_account(live_system, api, second, "New statement", symbol="SAME", line="15,20,14")

    sign_in(page, live_system, token, "holdings.html")
    until(page, holdings_loaded, what="the holdings")

    [row] = holdings_rows(page)
    # 20 held; average (5 x 10 + 15 x 20) / 20; the newer statement's price; 20 x 14; 280 - 20 x 17.5
    assert row[:5] == ["SAME", "NSE", "Old statement, New statement", "INR", "20"]
    assert row[5:9] == [_money(page, Decimal(v), "INR") for v in ("17.5", "14", "280")] + [
        "-" + _money(page, Decimal(70), "INR")
    ]
    assert row[9] == "-20.00 %"  # (WebDriver reads the no-break space as a space)


def test_a_user_with_nothing_yet_is_told_what_to_do_next(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    sign_in(page, live_system, live_system.sign_up(email), "holdings.html")

    empty = until(page, lambda b: b.find_element(By.ID, "empty").is_displayed(), what="the empty state")

    assert empty and "no portfolio yet" in page.find_element(By.ID, "empty-text").text
    link = page.find_element(By.CSS_SELECTOR, "#empty a")
    assert link.get_attribute("href").endswith("/ui/accounts.html")
    assert not page.find_element(By.ID, "content").is_displayed()


# --- set-up through the API ----------------------------------------------------------------------


def _api(system: LiveSystem, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{system.base_url}/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, (response.request.url, response.status_code, response.text)
    return response.json() if response.content else None


def _synced_account(system: LiveSystem, api: httpx.Client, portfolio: str, label: str, *, market: str) -> str:
    body = {"broker": "sim", "label": label, "sync_interval_seconds": RARELY}
    account = _ok(api.post(f"/portfolios/{portfolio}/accounts", json=body))["id"]
    _ok(api.put(f"/accounts/{account}/credentials", json={"credentials": {"market": market}}))
    _sync(system, api, account)
    return str(account)


def _imported_account(
    system: LiveSystem, api: httpx.Client, portfolio: str, label: str, *, symbol: str, line: str = "5,10,12"
) -> None:
    """A `csv` account holding `symbol` on NSE in INR (`line`: quantity, average and last price),
    imported from a statement."""
    account = _ok(api.post(f"/portfolios/{portfolio}/accounts", json={"broker": "csv", "label": label}))["id"]
    statement = f"symbol,exchange,quantity,average_price,last_price,currency\n{symbol},NSE,{line},INR\n"
    _ok(api.post(f"/accounts/{account}/statements", content=statement, headers={"Content-Type": "text/csv"}))
    _until_synced(system, api, account, after=None)


def _sync(system: LiveSystem, api: httpx.Client, account: str) -> None:
    """Sync now, and wait until the account's positions come from a snapshot newer than before."""
    before = _ok(api.get(f"/accounts/{account}"))["positions_as_of"]
    _ok(api.post(f"/accounts/{account}/sync"))
    _until_synced(system, api, account, after=before)


def _until_synced(system: LiveSystem, api: httpx.Client, account: str, *, after: str | None) -> None:
    async def synced() -> bool:
        async with httpx.AsyncClient(base_url=str(api.base_url), headers=api.headers, timeout=10) as client:
            now = (await client.get(f"/accounts/{account}")).json()["positions_as_of"]
        return now is not None and now != after

    system.run(eventually(synced, what=f"account {account} to sync"))


def _worth(line: dict[str, Any]) -> Decimal:
    return Decimal(line["market_value"]) if line["market_value"] is not None else Decimal(0)


# --- reading the page ----------------------------------------------------------------------------


def _footer(browser: webdriver.Chrome) -> dict[str, list[str]]:
    """Each totals line of the table: its heading, and its value, gain and gain % cells."""
    return {
        row.find_element(By.TAG_NAME, "th").text: [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#holdings-table tfoot tr")
    }


def _history(browser: webdriver.Chrome) -> list[dict[str, float]]:
    points: list[dict[str, float]] = browser.execute_script(
        "return Chart.getChart(document.getElementById('history-chart')).data.datasets[0].data"
    )
    return points


def _money(browser: webdriver.Chrome, amount: Decimal, currency: str) -> str:
    """`amount` as the page formats money (the browser's locale)."""
    text: str = browser.execute_script(
        "return new Intl.NumberFormat(undefined, {style: 'currency', currency: arguments[1]})"
        ".format(Number(arguments[0]))",
        str(amount),
        currency,
    )
    return text


def _number(text: str) -> float:
    return float("".join(c for c in text if c.isdigit() or c in ".-"))


def _sort_state(browser: webdriver.Chrome, column: int) -> str | None:
    header: WebElement = browser.find_elements(By.CSS_SELECTOR, "#holdings-table thead th")[column]
    return header.get_attribute("aria-sort")


def _tab_to(browser: webdriver.Chrome, target: WebElement, *, most: int = 60) -> None:
    """Press Tab from the top of the page until `target` has the focus, as a keyboard user would."""
    browser.execute_script("document.querySelector('a.skip').focus()")
    for _ in range(most):
        if browser.switch_to.active_element == target:
            return
        browser.switch_to.active_element.send_keys(Keys.TAB)
    raise AssertionError(f"Tab never reached {target.tag_name}#{target.get_attribute('id')}")
