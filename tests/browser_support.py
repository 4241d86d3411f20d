"""The console's browser tests: Debian's chromium driven by its chromedriver through
Selenium (nothing downloads a browser), the app served on loopback by a real HTTP server,
and axe-core (npm, ``tests/axe``) injected into the pages.

``chrome`` (a session-wide headless browser) skips its tests when the browser, its driver
or axe-core is missing -- unless PDM_REQUIRE_BROWSER=1 (CI), which makes that a failure,
and a run whose browser tests were skipped fails as a whole (conftest's ``RequiredTests``).
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("PDM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PDM_CHROMEDRIVER", "/usr/bin/chromedriver")
# Headless, and quiet on a closed network: no background connections, no updates.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-extensions", "--window-size=1280,900", "--lang=en-US")


def browser_required() -> bool:
    return os.environ.get("PDM_REQUIRE_BROWSER") == "1"


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (./dev test installs the test extra)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} is missing: apt-get install chromium chromium-driver ({package})"
    if not AXE.exists():
        return f"{AXE.relative_to(ROOT)} is missing: npm ci --prefix tests/axe (./dev test does it when npm is there)"
    return None


def start_chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@pytest.fixture(scope="session")
def chrome():
    problem = browser_problem()
    if problem:
        if browser_required():
            pytest.fail(f"the browser is required (PDM_REQUIRE_BROWSER=1): {problem}")
        pytest.skip(problem)
    # Selenium looks for drivers online only when it is given none; say so anyway.
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = start_chrome()
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


class LiveServer:
    """``app`` served by werkzeug's threaded HTTP server on a free loopback port, in a
    thread of the test process (so a test can reach the app's fakes and database)."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.thread.join(10)


def color_scheme(driver, scheme: str) -> None:
    """Render the pages as a browser set to ``scheme`` ("light" or "dark") would."""
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": scheme}]})


def axe_violations(driver) -> list[dict]:
    """axe-core's serious and critical violations on the page the browser shows."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done([{id: 'axe-error',"
        " impact: 'critical', description: String(e), nodes: []}]));")
    return [{"id": v["id"], "impact": v["impact"], "description": v["description"],
             "nodes": [n.get("target") for n in v.get("nodes", [])][:5]}
            for v in result if v.get("impact") in ("serious", "critical")]
