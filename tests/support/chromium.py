"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver.

Both paths are given, so Selenium Manager never runs (it would try to download a driver). If the
browser cannot start, the caller fails the run with `WHAT_TO_INSTALL`: nothing is skipped."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from tests.support.screenshots import DESKTOP

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WHAT_TO_INSTALL = (
    "the browser tests need Debian's Chromium and its driver at /usr/bin/chromium and "
    "/usr/bin/chromedriver: run `make test-deps` (infra/install-test-deps), or "
    "`apt-get install chromium chromium-driver`"
)


class ChromiumUnavailable(Exception):
    """Chromium or chromedriver is missing or would not start; the message says what to install."""


def start_chromium(chromium: Path = CHROMIUM, chromedriver: Path = CHROMEDRIVER) -> webdriver.Chrome:
    missing = [str(path) for path in (chromium, chromedriver) if not path.is_file()]
    if missing:
        raise ChromiumUnavailable(f"{', '.join(missing)} not found; {WHAT_TO_INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the sandbox cannot start as root, as in CI containers
        "--disable-dev-shm-usage",  # a container's /dev/shm is too small for the renderer
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    # Every request the pages make, and the console, for tests/support/page_problems.py.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    try:
        browser = webdriver.Chrome(service=Service(str(chromedriver)), options=options)
    except WebDriverException as exc:
        raise ChromiumUnavailable(f"Chromium did not start ({exc.msg}); {WHAT_TO_INSTALL}") from exc
    # The viewport itself, not the window around it: pages and screenshots see exactly this size.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
    return browser
