"""What no dashboard page may do, read from Chromium's logs: request anything outside the API's own
origin (no CDN, no tracker: the issue's rule), or log an error to the console (a script that threw,
a Content-Security-Policy violation). A response with an error status is not a problem here: pages
show the API's 4xx answers on purpose."""

from __future__ import annotations

import json

from selenium import webdriver

# What a page builds itself, without a request: charts' images, downloads it makes.
LOCAL_SCHEMES = ("data:", "blob:")


def page_problems(browser: webdriver.Chrome, origin: str) -> list[str]:
    """The problems since the last call (reading the logs empties them)."""
    problems = [f"request outside {origin}: {url}" for url in _requested(browser) if not _own(url, origin)]
    problems += [
        f"console {entry['level']} ({entry.get('source', '?')}): {entry['message']}"
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") != "network"
    ]
    return problems


def _requested(browser: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _own(url: str, origin: str) -> bool:
    return url.startswith((f"{origin}/", *LOCAL_SCHEMES))
