"""The fleet's status page in a real headless browser: Debian's chromium, driven through its chromedriver.

The slow suite runs it; it skips, saying why, where chromium or chromedriver is not installed (on Debian:
``apt-get install chromium chromium-driver``; the project's files do not install a browser).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d1sync.emulator.server import EmulatorServer
from d1sync.fleet.web import FleetServer

from .conftest import MakeFleet, make_tenant, write

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium, with the flags a machine without a network and without a screen needs."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="d1sync-chromium-") as profile:
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


# Read in one script, at one moment of one page: the page reloads itself every 5 s, and an element found
# before a reload is stale after it.
_CELLS = "return [...document.querySelectorAll(arguments[0])].map(r => [...r.children].map(c => c.innerText))"


def tenant_rows(driver: Any) -> list[list[str]]:
    """The cells of the tenants table as the browser renders them."""
    rows: list[list[str]] = driver.execute_script(_CELLS, "#tenants tbody tr")
    return rows


def text_of(driver: Any, selector: str) -> str:
    text: str = driver.execute_script("return document.querySelector(arguments[0]).innerText", selector)
    return text


def test_the_status_page_renders_the_tenants_and_refreshes_itself(
    browser: Any, account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    for name in ("a", "b"):
        make_tenant(tenants / f"{name}.db")
    fleet = make_fleet(sweep_interval=0.2, tick=0.1)
    fleet.drain(timeout=30)
    fleet.start()
    with FleetServer(fleet.status, port=0) as server:
        browser.get(server.url)
        assert browser.title == "d1sync fleet"
        head = browser.execute_script(_CELLS, "#tenants thead tr")[0]
        assert head[:6] == ["file", "database", "state", "pending", "lag", "dead"]
        rows = tenant_rows(browser)
        assert sorted(r[0] for r in rows) == ["a.db", "b.db"]
        assert all(r[1] in ("a", "b") and r[3] == "0" for r in rows)
        assert all(r[-1].endswith("%") for r in rows)  # size against D1's 10 GB
        assert "2 tenants" in text_of(browser, "#totals")
        first_load = browser.execute_script("return performance.timeOrigin")

        # A new tenant and a write: the page, reloading itself, shows both without anyone touching it.
        make_tenant(tenants / "c.db", rows=3)
        write(tenants / "a.db", "INSERT INTO notes (id, body, n) VALUES (100, 'new', 1)")
        # a look that meets a reload half-way is looked at again
        WebDriverWait(browser, 30, poll_frequency=0.5, ignored_exceptions=(WebDriverException,)).until(
            lambda d: sorted(r[0] for r in tenant_rows(d)) == ["a.db", "b.db", "c.db"]
        )
        assert browser.execute_script("return performance.timeOrigin") > first_load  # a reload, not a script
        assert "3 tenants" in text_of(browser, "#totals")
