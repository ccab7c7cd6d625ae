"""Screenshots of dashboard pages for the README, at fixed sizes so they compare run to run.

A test run saves them under .run/screenshots/ (so that `make test` leaves the checkout as it was);
`make screenshots` (UPDATE_SCREENSHOTS=1) saves them over docs/screenshots/, the README's."""

from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.support.wait import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else ".run") / "screenshots"
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
# The page must settle at the new size (charts resize on the next frames) and fit its width.
FITS_WITHIN_S = 5.0


def screenshot(browser: webdriver.Chrome, name: str, *, phone: bool = False) -> Path:
    """Save the page as <name>.png in SCREENSHOTS, seen at 1280x900 or (phone) 390x844, once no
    part of it is wider than the screen (failing if it stays wider); then back to the desktop size."""
    size = PHONE if phone else DESKTOP
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", size)
    try:
        WebDriverWait(browser, FITS_WITHIN_S).until(
            lambda b: b.execute_script("return document.documentElement.scrollWidth") <= size["width"],
            message=f"{name}: the page stays wider than {size['width']} px (it would scroll sideways)",
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if not browser.save_screenshot(str(path)):
            raise AssertionError(f"Chromium did not save the screenshot {path}")
        return path
    finally:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
