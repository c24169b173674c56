"""In a real browser (Debian's Chromium): signed out, the dashboard sends you to sign in; signed in, it shows the
figures and its live feed refreshes through the session cookie; changing a filter in its form changes the URL and
the numbers, and the feed keeps the filter; signing out ends it. No console error (a CSP violation, a failed
request, a script error) is tolerated, and a screenshot of each step is kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import Engine

from .browser import browser, console_errors, live_dashboard, save_screenshot, sign_in, wait_for
from .conftest import NOW, PASSWORD, add_user
from .data import fill_demo, sha
from .test_web_filters import fill as fill_filtered

__all__ = ["browser", "live_dashboard"]  # the fixtures, used by name


def test_sign_in_see_the_dashboard_and_sign_out(
    engine: Engine, live_dashboard: Callable[..., str], browser: webdriver.Chrome
) -> None:
    fill_demo(engine, now=datetime.now(UTC), days=7)
    add_user(engine, "ann", role="viewer")
    base = live_dashboard(engine, refresh_seconds=2)

    browser.get(base + "/?window=7d")
    wait_for(browser, lambda d: "/login" in d.current_url, what="the redirect to the sign-in page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "CarSpot"
    save_screenshot(browser, "sign-in-page")

    sign_in(browser, base, name="ann", password=PASSWORD, path="/?window=7d")
    assert browser.current_url == base + "/?window=7d"  # back where the redirect started
    kpis = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".kpi-value"), what="the figures")
    assert len(kpis) == 5 and int(kpis[1].text.replace(",", "")) > 0  # images analysed in the window
    assert browser.find_element(By.CSS_SELECTOR, ".who-am-i").text == "ann · viewer"
    assert browser.find_elements(By.CSS_SELECTOR, "table.share td.make")  # the brand share table has rows
    status = browser.find_element(By.ID, "feed-status")
    wait_for(browser, lambda d: "updated" in status.text, what="the live feed's refresh from /api/recent")
    assert "live ok" in (status.get_attribute("class") or "")
    save_screenshot(browser, "dashboard-signed-in")
    assert console_errors(browser) == []

    browser.find_element(By.CSS_SELECTOR, ".account button[type=submit]").click()
    wait_for(browser, lambda d: "/login" in d.current_url, what="the sign-in page after signing out")
    browser.get(base + "/")
    wait_for(browser, lambda d: "/login" in d.current_url, what="signed out for good")

    # The console check sees errors: the API refusing a signed-out browser is one (then drained: nothing is wrong).
    browser.get(base + "/api/summary")
    seen = wait_for(browser, lambda d: console_errors(d), what="the refused request in the console")
    assert any("401" in message for message in seen), seen


def kpi(driver: webdriver.Chrome, name: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f"#kpi-{name} .kpi-value").text)


def feed_images(driver: webdriver.Chrome) -> list[str]:
    return [c.get_attribute("title") or "" for c in driver.find_elements(By.CSS_SELECTOR, "#feed-body code")]


def test_on_the_dashboard_a_filter_changes_the_numbers_and_the_live_feed_keeps_it(
    engine: Engine, live_dashboard: Callable[..., str], browser: webdriver.Chrome
) -> None:
    """The data and the numbers by hand: ``test_web_filters``."""
    fill_filtered(engine)
    add_user(engine, "ann", role="viewer")
    base = live_dashboard(engine, clock=lambda: NOW, refresh_seconds=2)

    sign_in(browser, base, name="ann", password=PASSWORD, path="/")
    wait_for(browser, lambda d: d.find_elements(By.ID, "filters"), what="the filter form")
    assert (kpi(browser, "images"), kpi(browser, "branded"), kpi(browser, "unidentified")) == ("4", "3", "1")

    Select(browser.find_element(By.ID, "f-campaign")).select_by_value("launch")
    browser.find_element(By.ID, "apply").click()
    wait_for(browser, lambda d: "campaign=launch" in d.current_url, what="the filtered view's URL")
    wait_for(browser, lambda d: kpi(d, "images") == "1", what="the campaign's images")
    assert (kpi(browser, "branded"), kpi(browser, "unidentified")) == ("1", "0")
    assert feed_images(browser) == [sha("T2")]
    # The feed refreshes from the API in the same view: still only the campaign's image, not every image.
    status = browser.find_element(By.ID, "feed-status")
    wait_for(browser, lambda d: "updated" in status.text, what="the live feed's refresh")
    assert feed_images(browser) == [sha("T2")]
    save_screenshot(browser, "dashboard-campaign-launch")

    Select(browser.find_element(By.ID, "f-campaign")).select_by_value("")
    confidence = browser.find_element(By.ID, "f-min_confidence")
    confidence.clear()
    confidence.send_keys("0.5")
    browser.find_element(By.ID, "apply").click()
    wait_for(browser, lambda d: "min_confidence=0.5" in d.current_url, what="the confidence in the URL")
    wait_for(browser, lambda d: kpi(d, "unidentified") == "2", what="a doubtful Toyota counted apart")
    assert (kpi(browser, "images"), kpi(browser, "branded")) == ("4", "2")
    assert "campaign=launch" not in browser.current_url

    browser.find_element(By.LINK_TEXT, "Last 30 days").click()  # a tab keeps the other filters
    wait_for(browser, lambda d: "days=30" in d.current_url, what="the 30-day tab")
    assert "min_confidence=0.5" in browser.current_url
    assert (kpi(browser, "images"), kpi(browser, "unidentified")) == ("6", "2")
    assert console_errors(browser) == []
