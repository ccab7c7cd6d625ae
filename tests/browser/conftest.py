"""The browser layer: headless Chromium (Debian's) against the whole embedded system on a real port.

One browser and one live system for this package; each test signs up its own users (unique emails), so
tests share no state. If Chromium cannot start, every test here fails saying what to install."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.support.chromium import ChromiumUnavailable, start_chromium
from tests.support.live_system import LiveSystem
from tests.support.page_problems import page_problems


@pytest.fixture(scope="package")
def live_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSystem]:
    # Per package, not session: its ledger, in a thread of this process, sets the process's metrics
    # every second, and must have stopped before other layers' tests read them.
    system = LiveSystem(tmp_path_factory.mktemp("live") / "live.db")
    system.start()
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[webdriver.Chrome]:
    try:
        chromium = start_chromium()
    except ChromiumUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield chromium
    finally:
        chromium.quit()


@pytest.fixture
def page(browser: webdriver.Chrome, live_system: LiveSystem) -> Iterator[webdriver.Chrome]:
    """The session's browser, left as a new visitor finds it: a test's sign-in does not leak. The
    test fails if a page it opened requested anything outside the API's origin or logged an error."""
    page_problems(browser, live_system.base_url)  # what earlier tests left in the logs
    yield browser
    problems = page_problems(browser, live_system.base_url)
    if browser.current_url.startswith("http"):
        browser.execute_script("window.sessionStorage.clear(); window.localStorage.clear();")
    browser.delete_all_cookies()
    # Leave the page: its timers (the Operations page refreshes itself) must not run on, tokenless,
    # into the next test's logs.
    browser.get("about:blank")
    assert not problems, "the pages did what no dashboard page may:\n" + "\n".join(problems)


@pytest.fixture
def email() -> str:
    return f"browser-{uuid.uuid4().hex[:12]}@portfolio-sync.example"
