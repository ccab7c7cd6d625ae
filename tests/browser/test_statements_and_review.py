"""Statements and held snapshots in the browser: a rejected file shows each problem beside its line,
and a statement the ledger held is reviewed against the current positions and accepted."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

from selenium import webdriver
from selenium.webdriver.common.by import By

from shared import topics
from shared.bus.port import OutgoingMessage
from shared.events import HoldingSnapshot, utc_now
from tests.support.account_data import UserApi
from tests.support.dashboard import sign_in, until
from tests.support.live_system import LiveSystem
from tests.support.screenshots import screenshot

HEADER = "symbol,quantity,average_price,currency\n"
FIVE_HOLDINGS = HEADER + "AAPL,12,145.30,USD\nMSFT,5,300,USD\nGOOGL,3,100,USD\nVTI,10,200,USD\nBND,4,70,USD\n"


def test_a_statement_with_a_bad_line_shows_the_problem_beside_that_line(
    live_system: LiveSystem, page: webdriver.Chrome, email: str, tmp_path: Path
) -> None:
    token = live_system.sign_up(email)
    UserApi(live_system, token).portfolio("Family")
    statement = tmp_path / "holdings.csv"
    statement.write_text(HEADER + "AAPL,12,145.30,USD\nMSFT,abc,300,USD\n<script>x</script>,3,100,USD\n")

    sign_in(page, live_system, token, "statements.html")
    until(page, lambda b: "No statement account yet" in b.find_element(By.ID, "status").text, what="the hint")
    page.find_element(By.ID, "csv-label").send_keys("Demat <i>1</i>")
    page.find_element(By.CSS_SELECTOR, "#new-csv-account button[type=submit]").click()
    until(
        page, lambda b: "Created Demat <i>1</i>" in b.find_element(By.ID, "status").text, what="the account"
    )
    page.find_element(By.ID, "statement-file").send_keys(str(statement))
    page.find_element(By.CSS_SELECTOR, "#upload button[type=submit]").click()

    bad = until(page, lambda b: b.find_elements(By.CSS_SELECTOR, "li.bad-line"), what="the marked lines")
    assert [line.get_attribute("data-line") for line in bad] == ["3"]
    assert bad[0].find_element(By.CSS_SELECTOR, ".line-text").text == "MSFT,abc,300,USD"
    assert bad[0].find_element(By.CSS_SELECTOR, ".problem").text == "Line 3: quantity 'abc' is not a number"
    lines = page.find_elements(By.CSS_SELECTOR, "ol.statement-lines .line-text")
    assert [line.text for line in lines][3] == "<script>x</script>,3,100,USD"  # a line is text, not markup
    assert "was not imported" in page.find_element(By.ID, "status").text
    screenshot(page, "statement-errors")
    screenshot(page, "statement-errors-phone", phone=True)  # fails if the page is wider than a phone


def test_a_held_statement_is_reviewed_side_by_side_and_accepted(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    user = UserApi(live_system, token)
    portfolio = user.portfolio("Family")
    account = user.statement_account(portfolio, "Demat <script>alert(1)</script>")
    assert user.imported(account, FIVE_HOLDINGS)["snapshot_status"] == "applied"
    # One of the five instruments: the ledger holds it as a likely incomplete file.
    assert user.imported(account, HEADER + "AAPL,15,145.30,USD\n")["snapshot_status"] == "held"

    # Signed out, the review's address leads through sign-in and back to the same review.
    sign_in(page, live_system, token, f"review.html?account={account}")
    until(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#review table.data tbody tr"), what="the review")
    assert page.find_element(By.CSS_SELECTOR, "#review h2").text == "Demat <script>alert(1)</script>"
    rows = {
        cells[0]: (cells[2:], row.get_attribute("class"))
        for row in page.find_elements(By.CSS_SELECTOR, "#review table.data tbody tr")
        if (cells := [cell.text for cell in row.find_elements(By.TAG_NAME, "td")])
    }
    assert rows["AAPL"] == (["12", "15", "+3", "changed"], "changed")
    assert rows["BND"] == (["4", "—", "-4", "not reported"], "gone")
    assert len(rows) == 5 and "1 of the 5 instruments" in page.find_element(By.ID, "review").text
    screenshot(page, "review")
    screenshot(page, "review-phone", phone=True)

    page.find_element(By.XPATH, "//button[starts-with(., 'Accept')]").click()
    until(
        page,
        lambda b: "Accepted: the snapshot is now" in b.find_element(By.ID, "status").text,
        what="applied",
    )
    holdings = user.call("GET", f"/accounts/{account}/holdings")
    assert [(h["symbol"], h["quantity"]) for h in holdings] == [("AAPL", "15")]
    until(
        page,
        lambda b: "holds no snapshot for review" in b.find_element(By.ID, "review").text,
        what="the redraw",
    )


def test_a_broker_snapshot_held_as_empty_is_dismissed_from_the_review_page(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    user = UserApi(live_system, token)
    body = {"broker": "sim", "label": "Broker account"}
    account = user.call("POST", f"/portfolios/{user.portfolio('Trading')}/accounts", json=body)["id"]
    # No scheduled sync meanwhile: it would settle the held snapshot before the page shows it.
    user.call("PATCH", f"/accounts/{account}/schedule", json={"enabled": False})
    user.synced(account)
    held = user.call("GET", f"/accounts/{account}/holdings")
    # The broker "reports" nothing where the account holds some: the ledger holds it for review.
    empty = HoldingSnapshot(
        account_id=uuid.UUID(account), request_id=uuid.uuid4(), broker="sim", taken_at=utc_now(), holdings=()
    )
    message = OutgoingMessage(topics.HOLDINGS_SNAPSHOTS, empty.key, empty.to_bytes())
    live_system.run(live_system.system.bus.publish([message]))
    user.until_account(account, lambda a: a["held_snapshot"] is not None, what="the empty snapshot held")

    sign_in(page, live_system, token, "accounts.html")
    until(page, lambda b: b.find_element(By.LINK_TEXT, "review it"), what="the review link").click()
    until(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#review table.data tbody tr"), what="the review")
    changes = [row.get_attribute("class") for row in page.find_elements(By.CSS_SELECTOR, "#review tbody tr")]
    assert changes == ["gone"] * len(held)
    runs_before = [run["id"] for run in user.call("GET", f"/accounts/{account}/sync-runs")["items"]]
    page.find_element(By.XPATH, "//button[starts-with(., 'Dismiss')]").click()

    until(
        page,
        lambda b: "holds no snapshot for review" in b.find_element(By.ID, "review").text,
        what="dismissed",
    )
    statuses = {s["id"]: s["status"] for s in user.call("GET", f"/accounts/{account}/snapshots")["items"]}
    assert statuses[str(empty.event_id)] == "dismissed"
    # The owner's dismissal did it (SnapshotDismissed), not another sync.
    assert [run["id"] for run in user.call("GET", f"/accounts/{account}/sync-runs")["items"]] == runs_before
    kept = user.call("GET", f"/accounts/{account}/holdings")
    assert [(h["symbol"], h["quantity"]) for h in kept] == [(h["symbol"], h["quantity"]) for h in held]


def test_sign_in_never_leads_to_another_site(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    token = live_system.sign_up(email)
    for elsewhere in ("https://evil.example/", "//evil.example/holdings.html", "javascript:alert(1)"):
        page.get(f"{live_system.base_url}/ui/index.html?next={quote(elsewhere)}")
        until(page, lambda b: b.find_element(By.ID, "token"), what="the sign-in form").send_keys(token)
        page.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
        until(
            page, lambda b: b.current_url == f"{live_system.base_url}/ui/holdings.html", what="the holdings"
        )
        page.execute_script("sessionStorage.clear()")
