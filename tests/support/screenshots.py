"""Screenshots of dashboard pages for the README, at fixed sizes so they compare run to run."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


def screenshot(browser: webdriver.Chrome, name: str, *, phone: bool = False) -> Path:
    """Save the page as docs/screenshots/<name>.png, seen at 1280x900 or (phone) 390x844; the browser
    returns to the desktop size afterwards."""
    size = PHONE if phone else DESKTOP
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", size)
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if not browser.save_screenshot(str(path)):
            raise AssertionError(f"Chromium did not save the screenshot {path}")
        return path
    finally:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
