"""The brand page in a real browser (Debian's Chromium): signed in, its thumbnails load (the browser decoded them),
changing a filter in the form changes the URL and the numbers, and the console stays clean. Screenshots are kept
under ``.carspot/artifacts/browser/``. The data and the numbers by hand: ``test_brands``."""

from __future__ import annotations

from collections.abc import Callable

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import Engine

from carspot.store.writer import AnalysisStore

from .browser import browser, console_errors, live_dashboard, save_screenshot, sign_in, wait_for
from .conftest import NOW, PASSWORD, add_user
from .test_brands import NAMES, PREVIOUS, THIS, image, posted

__all__ = ["browser", "live_dashboard"]  # the fixtures, used by name


def kpi(driver: webdriver.Chrome, ident: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f"#{ident} .kpi-value").text)


def test_brand_page_thumbnails_load_and_a_filter_changes_the_numbers(
    engine: Engine, live_dashboard: Callable[..., str], browser: webdriver.Chrome
) -> None:
    analyses = [
        image("T1", PREVIOUS, [("Toyota", 0.9)], thumb=True),
        *(image(n, PREVIOUS, [("BMW", 0.9)]) for n in ("B1", "B2", "B3")),
        image("T2", THIS, [("Toyota", 0.9)], thumb=True),
        image("T3", THIS, [("Toyota", 0.8)], thumb=True),
        image("T4", THIS, [("Toyota", 0.45)]),
        image("B4", THIS, [("BMW", 0.9), ("Toyota", 0.7)], thumb=True),
        image("U1", THIS, [("Toyota", 0.2)], unidentified=True),
    ]
    campaigns = {"T2": "launch", "T3": "launch", "B4": "launch"}
    posts = [posted(n, a.analyzed_at, campaigns.get(n)) for n, a in zip(NAMES, analyses, strict=True)]
    AnalysisStore(engine).write_batch(posts=posts, analyses=analyses)
    add_user(engine, "ann", role="viewer")
    base = live_dashboard(engine, clock=lambda: NOW)

    sign_in(browser, base, name="ann", password=PASSWORD, path="/brands/Toyota")
    assert browser.current_url == base + "/brands/Toyota"
    pictures = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "img.thumb-img"), what="the thumbnails")
    assert len(pictures) == 4  # T1, T2, T3 and B4 (a Toyota beside the BMW) have one; T4 none
    loaded = wait_for(
        browser,
        lambda d: d.execute_script(
            "const i = [...document.querySelectorAll('img.thumb-img')];"
            "return i.every(x => x.complete && x.naturalWidth > 0) ? i.map(x => x.naturalWidth) : null;"
        ),
        what="every thumbnail decoded",
    )
    assert loaded == [320, 320, 320, 320]
    assert browser.find_elements(By.CSS_SELECTOR, "svg.boxes rect.box.mine")  # boxes over the pictures
    assert (kpi(browser, "kpi-images"), kpi(browser, "kpi-share")) == ("4", "50.0%")
    save_screenshot(browser, "brand-page")
    assert console_errors(browser) == []

    Select(browser.find_element(By.ID, "f-campaign")).select_by_value("launch")
    browser.find_element(By.ID, "apply").click()
    wait_for(browser, lambda d: "campaign=launch" in d.current_url, what="the filtered view's URL")
    wait_for(browser, lambda d: kpi(d, "kpi-images") == "2", what="the campaign's count")
    assert kpi(browser, "kpi-share") == "66.7%"
    assert len(browser.find_elements(By.CSS_SELECTOR, "img.thumb-img")) == 3  # T2, T3, B4
    shared = browser.current_url
    save_screenshot(browser, "brand-page-campaign-launch")

    browser.get(base + "/")  # the shared URL gives the same view again
    browser.get(shared)
    wait_for(browser, lambda d: kpi(d, "kpi-images") == "2", what="the same view from its URL")
