"""A real browser on the dashboard, for every page's test to reuse: Debian's Chromium driven by Selenium through
Debian's chromedriver (no browser or driver is downloaded: both come from apt, installed by scripts/setup).

Fixtures (import them into a test module, or a conftest):

- ``live_dashboard``: ``start(engine, **create_app options) -> base URL``, the app served by uvicorn on a free
  loopback port in a thread, stopped after the test;
- ``browser``: a headless Chromium that records the console; after the test a screenshot of the last page is
  kept under ``.carspot/artifacts/browser/`` (pass or fail) and any console error fails the test.

Helpers: :func:`sign_in`, :func:`console_errors`, :func:`save_screenshot`, :func:`wait_for`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import Engine

from carspot.dashboards.web import create_app
from tests.conftest import REPO_ROOT

from .conftest import auth_options

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / ".carspot" / "artifacts" / "browser"
WAIT_S = 20.0
_T = TypeVar("_T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def live_dashboard() -> Iterator[Callable[..., str]]:
    """``start(engine, **options)`` serves ``create_app(engine=engine, **options)`` (cheap argon2 unless
    ``auth`` is given) on 127.0.0.1 and returns its base URL; every server started is stopped afterwards."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(engine: Engine, **options: Any) -> str:
        options.setdefault("auth", auth_options())
        port = _free_port()
        config = uvicorn.Config(
            create_app(engine=engine, **options), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"dashboard-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the dashboard server stopped while starting"
            assert time.monotonic() < deadline, "the dashboard server did not start within 30 s"
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=15)


def chromium_driver() -> webdriver.Chrome:
    """Headless Debian Chromium through Debian's chromedriver, recording the browser console."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:  # fail, never skip: a browser test that did not run is not a pass
        pytest.fail(
            f"{', '.join(missing)} not found: `scripts/setup --dev` installs Debian's chromium and chromium-driver",
            pytrace=False,
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers on the network
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",  # nothing but the dashboard on loopback
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The console's errors since the last call (the log is drained as it is read)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def save_screenshot(driver: webdriver.Chrome, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


def wait_for(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], _T], *, what: str) -> _T:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition, message=f"waited {WAIT_S} s for {what}")


def sign_in(driver: webdriver.Chrome, base_url: str, *, name: str, password: str, path: str = "/") -> None:
    """Open ``path`` (the app sends a signed-out browser to the sign-in page), sign in, and wait to be back."""
    driver.get(base_url + path)
    wait_for(driver, lambda d: "/login" in d.current_url, what="the sign-in page")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: "/login" not in d.current_url, what="the page after signing in")


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    """A headless Chromium; afterwards a screenshot of the last page is kept and console errors fail the test."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} missing: run scripts/setup --dev", pytrace=False)
    driver = chromium_driver()
    try:
        yield driver
        save_screenshot(driver, request.node.name)
        errors = console_errors(driver)
        assert errors == [], f"console errors: {errors}"
    finally:
        driver.quit()
