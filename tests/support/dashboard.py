"""Driving the dashboard in the browser: signing in the way a person does, and waiting for what a
page shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.live_system import LiveSystem

T = TypeVar("T")
PAGE_TIMEOUT_S = 15.0


def sign_in(browser: webdriver.Chrome, system: LiveSystem, token: str, page: str) -> None:
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
