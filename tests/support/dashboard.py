"""Driving the dashboard in the browser: signing in the way a person does, and waiting for what a
page shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

T = TypeVar("T")


class Site(Protocol):
    """Where the dashboard is served: the embedded live system, or a stack of service processes."""

    @property
    def base_url(self) -> str: ...


PAGE_TIMEOUT_S = 15.0


def sign_in(browser: webdriver.Chrome, system: Site, token: str, page: str) -> None:
    """Open `page` (say "operator.html"), get sent to the sign-in page, enter `token`, and come back."""
    browser.get(f"{system.base_url}/ui/{page}")
    field = until(browser, lambda b: b.find_element(By.ID, "token"), what="the sign-in form")
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    until(browser, lambda b: b.current_url.endswith(f"/ui/{page}"), what=f"{page} after signing in")


def until(browser: webdriver.Chrome, condition: Callable[[webdriver.Chrome], T], *, what: str) -> T:
    """Poll `condition` until it returns something truthy. A missing element counts as not yet, and so
    does one the page replaced meanwhile (pages redraw their panels)."""
    waiting = WebDriverWait(
        browser, PAGE_TIMEOUT_S, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )
    return waiting.until(condition, message=f"waited for {what}")


def read(browser: webdriver.Chrome, reading: Callable[[webdriver.Chrome], T], *, what: str) -> T:
    """What `reading` returns (falsy or not), read again if the page redrew what it was reading
    meanwhile (a stale element): pages that refresh themselves on a timer can do so mid-read."""
    return until(browser, lambda b: (reading(b),), what=what)[0]


# --- the accounts page ---------------------------------------------------------------------------


def sign_up_in_browser(browser: webdriver.Chrome, system: Site, email: str, page: str) -> None:
    """Sign up on the sign-in page that `page` sends a new visitor to, and come back to `page`."""
    browser.get(f"{system.base_url}/ui/{page}")
    until(browser, lambda b: b.find_element(By.ID, "email"), what="the sign-up form").send_keys(email)
    browser.find_element(By.CSS_SELECTOR, "#sign-up button[type=submit]").click()
    until(browser, lambda b: b.find_element(By.ID, "continue").is_displayed(), what="the new token")
    browser.find_element(By.ID, "continue").click()
    until(browser, lambda b: f"/ui/{page}" in b.current_url, what=f"{page} after signing up")


def card_of(browser: webdriver.Chrome, label: str) -> WebElement | None:
    for card in browser.find_elements(By.CSS_SELECTOR, "section.account"):
        if card.find_element(By.TAG_NAME, "h3").text.startswith(label):
            return card
    return None


def run_ended(live: WebElement) -> str | None:
    text: str = live.text
    ended = text.startswith(("Sync succeeded:", "Sync failed")) and "is recording" not in text
    return text if ended else None


def add_sim_account(browser: webdriver.Chrome, label: str, market: str) -> WebElement:
    until(browser, lambda b: b.find_element(By.ID, "add-section").is_displayed(), what="the add form")
    browser.find_element(By.ID, "account-label").send_keys(label)
    assert browser.find_element(By.ID, "account-broker").get_attribute("value") == "sim"
    market_field = browser.find_element(By.CSS_SELECTOR, "#credential-fields input[data-credential=market]")
    assert market_field.get_attribute("type") == "password"
    market_field.send_keys(market)
    browser.find_element(By.CSS_SELECTOR, "#add-account button[type=submit]").click()
    card = until(browser, lambda b: card_of(b, label), what=f"the card of {label}")
    assert market_field.get_attribute("value") == ""  # write-only: cleared once sent
    return card


# --- the holdings page ---------------------------------------------------------------------------


def holdings_loaded(browser: webdriver.Chrome) -> bool:
    return "status-success" in (browser.find_element(By.ID, "status").get_attribute("class") or "")


def holdings_rows(browser: webdriver.Chrome) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#holdings-table tbody tr")
    ]


def chart_data(browser: webdriver.Chrome, selector: str) -> dict[str, Any]:
    data: dict[str, Any] = browser.execute_script(
        "const c = Chart.getChart(document.querySelector(arguments[0]));"
        "return {labels: c.data.labels, datasets: c.data.datasets.map(d => ({data: d.data}))};",
        selector,
    )
    return data
