"""In a real browser (Debian's Chromium): signed out, the dashboard sends you to sign in; signed in, it shows the
figures and its live feed refreshes through the session cookie; signing out ends it. No console error (a CSP
violation, a failed request, a script error) is tolerated, and a screenshot of each step is kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy import Engine

from .browser import browser, console_errors, live_dashboard, save_screenshot, sign_in, wait_for
from .conftest import PASSWORD, add_user
from .data import fill_demo

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
