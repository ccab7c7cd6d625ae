"""The accounts page: a new user signs up, creates a portfolio, adds a simulated-broker account, and
watches a "sync now" run until it ends; a rejected credential shows its form, which is write-only."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from tests.support.dashboard import add_sim_account, card_of, run_ended, sign_in, sign_up_in_browser, until
from tests.support.live_system import LiveSystem
from tests.support.screenshots import screenshot

# Records every text the run's live region shows, as a screen reader would hear it.
_RECORD_LIVE_REGION = """
const region = arguments[0];
window.heardTexts = [];
new MutationObserver(() => window.heardTexts.push(region.textContent))
  .observe(region, {childList: true, characterData: true, subtree: true});
"""


def test_a_new_user_adds_a_sim_account_and_watches_sync_now_reach_its_end(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    sign_up_in_browser(page, live_system, email, "accounts.html")
    until(page, lambda b: "Create a portfolio first" in b.find_element(By.ID, "status").text, what="the hint")
    page.find_element(By.ID, "portfolio-name").send_keys("Long term <script>alert(1)</script>")
    page.find_element(By.CSS_SELECTOR, "#new-portfolio button[type=submit]").click()
    until(
        page, lambda b: "Created the portfolio" in b.find_element(By.ID, "status").text, what="the portfolio"
    )
    # The status is said before the choice is drawn again.
    chosen = until(
        page, lambda b: b.find_element(By.CSS_SELECTOR, "#portfolio option:checked"), what="the choice"
    )
    assert chosen.text == "Long term <script>alert(1)</script>"  # as text, not markup

    label = "Main <b>sim</b>"
    card = add_sim_account(page, label, "us")
    assert card.find_element(By.TAG_NAME, "h3").text.startswith(label)
    live = card.find_element(By.CSS_SELECTOR, "p.status[aria-live=polite]")
    page.execute_script(_RECORD_LIVE_REGION, live)
    card.find_element(By.CSS_SELECTOR, "button.sync-now").click()

    ended = until(page, lambda b: run_ended(live), what="the run's end")
    # The account's first scheduled sync runs beside it: whichever snapshot the ledger records last
    # may be the older one, which goes to history only.
    assert ended in {
        "Sync succeeded: its holdings are now the account's positions.",
        "Sync succeeded: the snapshot was older than the positions shown, so it went to history only.",
    }
    heard = page.execute_script("return window.heardTexts")
    assert heard[0] == "Requesting a sync…" and heard[-1] == ended
    card = until(page, lambda b: card_of(b, label), what="the card drawn again")
    facts = card.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "Last success\nnever" not in facts and "Credentials\nstored (never shown)" in facts
    assert "Syncs every" in card.find_element(By.CSS_SELECTOR, ".schedule").text
    assert len(card.find_elements(By.CSS_SELECTOR, ".schedule ol.next-runs li")) == 5
    page.execute_script("window.scrollTo(0, 0)")
    screenshot(page, "accounts")
    screenshot(page, "accounts-phone", phone=True)  # fails if the page is wider than a phone


def test_rejected_credentials_show_the_form_that_replaces_them(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    sign_in(page, live_system, live_system.sign_up(email), "accounts.html")
    page.find_element(By.ID, "portfolio-name").send_keys("Trading")
    page.find_element(By.CSS_SELECTOR, "#new-portfolio button[type=submit]").click()
    add_sim_account(page, "Wrong market", "mars")  # the simulated broker refuses it as `auth`

    card = until(page, lambda b: card_of(b, "Wrong market"), what="the new card")
    # Its first scheduled sync may have failed already (then the API refuses this one, 409): either
    # way the card ends showing the rejection.
    card.find_element(By.CSS_SELECTOR, "button.sync-now").click()
    card = until(
        page,
        lambda b: (
            (c := card_of(b, "Wrong market"))
            and c.find_elements(By.CSS_SELECTOR, "form.credentials-form p.bad")
            and c
        ),
        what="the rejection and its form",
    )
    assert (
        "The broker rejected the account's credentials" in card.find_element(By.CSS_SELECTOR, "dl.facts").text
    )
    assert not card.find_elements(By.CSS_SELECTOR, "button.sync-now")  # the API would refuse it
    form = card.find_element(By.CSS_SELECTOR, "form.credentials-form")
    field = form.find_element(By.CSS_SELECTOR, "input[data-credential=market]")
    assert field.get_attribute("value") == ""  # never shown back
    field.send_keys("in")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(page, lambda b: "syncs resume" in b.find_element(By.ID, "status").text, what="the new credentials")
    card = until(page, lambda b: card_of(b, "Wrong market"), what="the card drawn again")
    assert card.find_elements(By.CSS_SELECTOR, "button.sync-now")


def test_a_schedule_is_changed_paused_and_the_account_removed_after_confirming(
    live_system: LiveSystem, page: webdriver.Chrome, email: str
) -> None:
    sign_in(page, live_system, live_system.sign_up(email), "accounts.html")
    page.find_element(By.ID, "portfolio-name").send_keys("Trading")
    page.find_element(By.CSS_SELECTOR, "#new-portfolio button[type=submit]").click()
    card = add_sim_account(page, "Scheduled", "in")
    schedule = until(page, lambda b: _schedule(b, "Syncs every"), what="the schedule")

    schedule.find_element(By.TAG_NAME, "summary").click()
    Select(schedule.find_element(By.CSS_SELECTOR, "select[id$=-kind]")).select_by_value("cron")
    cron = schedule.find_element(By.CSS_SELECTOR, "input[id$=-cron]")
    cron.clear()
    cron.send_keys("61 9 * * 1-5")
    schedule.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    refused = until(
        page, lambda b: _schedule(b, "").find_element(By.CSS_SELECTOR, "p.status-error"), what="a 422"
    )
    assert "not a cron expression" in refused.text
    cron.clear()
    cron.send_keys("30 9 * * 1-5")
    zone = schedule.find_element(By.CSS_SELECTOR, "input[id$=-zone]")
    zone.clear()
    zone.send_keys("Asia/Kolkata")
    schedule.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    schedule = until(page, lambda b: _schedule(b, "Schedule saved."), what="the saved schedule")
    assert 'Syncs at cron "30 9 * * 1-5" in Asia/Kolkata. Active.' in schedule.text
    assert len(schedule.find_elements(By.CSS_SELECTOR, "ol.next-runs li")) == 5

    schedule.find_element(By.XPATH, ".//button[.='Pause schedule']").click()
    schedule = until(page, lambda b: _schedule(b, "Schedule paused."), what="the paused schedule")
    assert "Paused (by you)" in schedule.text and "No run is coming." in schedule.text

    card = until(page, lambda b: card_of(b, "Scheduled"), what="the card")
    card.find_element(By.XPATH, ".//button[.='Remove account…']").click()
    confirm = card.find_element(By.CSS_SELECTOR, ".confirm")
    assert confirm.is_displayed() and "cannot be undone" in confirm.text
    confirm.find_element(By.XPATH, ".//button[.='Keep it']").click()
    assert not confirm.is_displayed() and card_of(page, "Scheduled")
    card.find_element(By.XPATH, ".//button[.='Remove account…']").click()
    confirm.find_element(By.XPATH, ".//button[.='Yes, remove Scheduled']").click()
    until(page, lambda b: b.find_element(By.ID, "status").text == "Removed Scheduled.", what="the removal")
    # The status is said before the list is drawn again: wait for the redraw, not only the words.
    until(page, lambda b: "has no accounts yet" in b.find_element(By.ID, "accounts").text, what="the redraw")
    assert card_of(page, "Scheduled") is None


def _schedule(browser: webdriver.Chrome, saying: str) -> WebElement | None:
    card = card_of(browser, "Scheduled")
    schedule = card.find_element(By.CSS_SELECTOR, ".schedule") if card else None
    return schedule if schedule is not None and saying in schedule.text else None
