"""The operators' console as a person uses it: Debian's headless chromium (through its
chromedriver) on the app served over HTTP, against PostgreSQL, the fake Dynadot and the
local PowerDNS. axe-core checks every page, light and dark."""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from sqlalchemy import insert

from browser_support import LiveServer, axe_violations, chrome, color_scheme  # noqa: F401  (chrome: a fixture)
from conftest import NOWHERE, POOL, tenant_records
from pdm_app.auth import ApiToken
from pdm_app.domain import utcnow
from pdm_app.models import PoolAllocation
from pdm_app.testing.webhook_receiver import new_secret
from pdm_app.webhooks.endpoints import WebhookSettings, parse_endpoints

KEY = "console-key-" + uuid.uuid4().hex
OPERATOR_SECRET = "operator-" + uuid.uuid4().hex
CLIENT_SECRET = "client-" + uuid.uuid4().hex
TOKENS = (ApiToken("ops-alice", "operator", OPERATOR_SECRET), ApiToken("catalyst", "client", CLIENT_SECRET))
LB = "198.51.100.7"
NAMESERVERS = ("ns1.openova.io", "ns2.openova.io", "ns3.openova.io")
# PDM_UPDATE_SCREENSHOTS=1: the README's screenshots are written anew from this run.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs"


class Console:
    """The browser on one running app: what a person does, in a few words."""

    def __init__(self, driver, url: str, app):
        self.driver, self.url, self.app = driver, url, app
        self.pdm = app.extensions["pdm"]

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    @property
    def path(self) -> str:
        return self.driver.current_url[len(self.url):]

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "main") -> str:
        return self.find(css).text

    def submit(self, css: str) -> None:
        """Click ``css`` and wait for the page it leads to."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.find("html")
        self.find(css).click()
        WebDriverWait(self.driver, 30).until(expected_conditions.staleness_of(page))

    def fill(self, css: str, value: str) -> None:
        from selenium.common.exceptions import WebDriverException

        for attempt in range(3):  # a page still settling may swap the field under the driver
            try:
                field = self.find(css)
                field.clear()
                field.send_keys(value)
                return
            except WebDriverException:
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def sign_in(self, secret: str = OPERATOR_SECRET) -> None:
        self.open("/console/login")
        self.fill("#token", secret)
        self.submit("form.card button[type=submit]")

    def activate(self, sub: str, pool: str = POOL, ip: str = LB) -> None:
        reservation = self.pdm.lifecycle.reserve(pool, sub, "catalyst-api", "catalyst")
        outcome = self.pdm.lifecycle.commit(pool, sub, reservation.token, f"{sub}.{pool}", ip, "catalyst")
        assert outcome.dns_done

    def seed(self, count: int, pool: str = POOL) -> None:
        """``count`` reservations straight into the table (t00000, t00001, ...): a Dynadot
        zone holds some 16 active tenants, a pool's table any number of names."""
        now = utcnow()
        rows = [dict(pool_domain=pool, subdomain=f"t{n:05d}", state="reserved",
                     reserved_at=now - timedelta(seconds=n), expires_at=now + timedelta(hours=1),
                     reservation_token=uuid.uuid4().hex * 2, sovereign_fqdn=None,
                     load_balancer_ip=None, created_by=f"batch-{n % 7}",
                     updated_at=now - timedelta(seconds=n), reserved_by="catalyst", carried_over=False)
                for n in range(count)]
        with self.pdm.engine.begin() as conn:
            conn.execute(insert(PoolAllocation), rows)


def console_app(app_factory, url, **overrides):
    return app_factory(url, secret_key=KEY, api_tokens=TOKENS, auth_mode="operators", auth_enabled=True, **overrides)


@pytest.fixture
def serve(chrome):  # noqa: F811  (the fixture of that name)
    """``serve(app)``: the browser on ``app``, served over HTTP, signed out, light."""
    servers = []

    def start(app) -> Console:
        server = LiveServer(app).__enter__()
        servers.append(server)
        chrome.get(server.url + "/console/login")
        chrome.delete_all_cookies()
        color_scheme(chrome, "light")
        return Console(chrome, server.url, app)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def console(serve, app_factory, postgres_url):
    return serve(console_app(app_factory, postgres_url))


def remove_records(fake, pool: str, hosts: set[str]) -> None:
    """An operator's hand edit at the registrar: those hosts' records gone."""
    zone = fake.zone(pool)
    fake.seed(pool, [r for r in zone.records if r.host not in hosts], ttl=zone.ttl)


def test_sign_in_find_a_tenant_among_thousands_read_its_records_and_history_and_sign_out(console, fake, tmp_path):
    console.seed(3000)
    console.activate("acme")
    console.open(f"/console/pools/{POOL}")
    assert console.path.startswith("/console/login"), "a page needs a signed-in operator"

    console.sign_in("not-a-token-at-all-000")
    assert "That is not an operator token." in console.text()
    console.sign_in(CLIENT_SECRET)
    assert "That is not an operator token." in console.text(), "a client's token opens no page"
    console.sign_in()
    assert console.path == "/console/" and "ops-alice" in console.text("header")
    assert POOL in console.text()

    console.submit(f"a[href='/console/pools/{POOL}']")
    console.fill("#q", "acm")
    console.submit("form.filters button")
    names = [a.text for a in console.all("tbody td:first-child a")]
    assert names == ["acme"], names
    console.driver.save_screenshot(str(tmp_path / "console-pool.png"))

    console.submit("tbody td:first-child a")
    assert console.find("h1").text == f"acme.{POOL}"
    statuses = {row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[4].text
                for row in console.all("table.diff tbody tr")}
    assert statuses == {f"{h}.acme.{POOL}": "ok" for h in ("*", "console", "gitea", "harbor", "admin", "api")}
    history = console.text("ol.timeline")
    assert "commit by catalyst" in history and "dns-published by dns" in history
    console.driver.save_screenshot(str(tmp_path / "console-tenant.png"))

    remove_records(fake, POOL, {"console.acme"})
    console.driver.refresh()
    drifted = [row.text for row in console.all("table.diff tbody tr.drift")]
    assert len(drifted) == 1 and drifted[0].startswith(f"console.acme.{POOL} A {LB} (none) missing"), drifted

    console.submit("form.inline button")  # sign out
    assert console.path.startswith("/console/login") and "Signed out." in console.text()
    console.open(f"/console/pools/{POOL}/tenants/acme")
    assert console.path.startswith("/console/login")
    if os.environ.get("PDM_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(exist_ok=True)
        for name in ("console-pool.png", "console-tenant.png"):
            shutil.copy(tmp_path / name, SCREENSHOTS / name)


def test_reconcile_a_drifted_dynadot_pool_from_the_plan(console, fake):
    console.activate("acme")
    console.activate("beta")
    remove_records(fake, POOL, {"console.acme", "api.acme"})
    console.sign_in()
    console.open(f"/console/pools/{POOL}/drift")
    plan = console.text("table.diff")
    assert "acme" in plan and "console.acme" in plan and "api.acme" in plan and "beta" not in plan
    assert len(tenant_records(fake.zone(POOL), "acme")) == 4, "the plan changes nothing"

    console.submit("form.card button[type=submit]")
    assert "applied" in console.text() and "clean" in console.text()
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6
    console.open(f"/console/changes?pool={POOL}&action=reconcile")
    rows = [r.text for r in console.all("tbody tr")]
    assert len(rows) == 1 and "ops-alice" in rows[0] and "console 127.0.0.1" in rows[0], rows


def test_reconcile_a_drifted_powerdns_pool_from_the_plan(serve, app_factory, postgres_url, powerdns):
    app = console_app(app_factory, postgres_url, pdns_base_url=powerdns.api_url, pdns_api_key=powerdns.api_key,
                      nameservers=NAMESERVERS)
    console = serve(app)
    console.activate("acme")
    headers = {"X-API-Key": powerdns.api_key}
    zone_url = f"{powerdns.server_url}/zones/acme.{POOL}."
    gone = requests.patch(zone_url, headers=headers, timeout=10, json={"rrsets": [
        {"name": f"console.acme.{POOL}.", "type": "A", "changetype": "DELETE"}]})
    assert gone.status_code == 204, gone.text

    console.sign_in()
    console.open(f"/console/pools/{POOL}/tenants/acme")
    text = console.text("table.diff")
    assert f"console.acme.{POOL} A {LB} (none) missing" in text
    assert "DS" in text and f"zone {POOL}. (the delegation)" in text, "its signed zone and its delegation are shown"

    console.open(f"/console/pools/{POOL}/drift")
    assert "console.acme" in console.text("table.diff")
    console.submit("form.card button[type=submit]")
    assert "applied" in console.text()
    rrsets = requests.get(zone_url, headers=headers, timeout=10).json()["rrsets"]
    assert any(r["name"] == f"console.acme.{POOL}." and r["type"] == "A" and r["records"][0]["content"] == LB
               for r in rrsets)


def test_release_of_an_active_tenant_needs_its_name_typed(console, fake):
    console.activate("acme")
    console.sign_in()
    console.open(f"/console/pools/{POOL}/tenants/acme")
    console.submit("a.button.danger")
    assert "live Sovereign" in console.text() and f"console.acme.{POOL}" in console.text()

    console.fill("#confirm", "acm")
    console.submit("form.card button[type=submit]")
    assert "Type acme to release this live tenant; nothing was released." in console.text()
    assert console.pdm.operators.allocation(POOL, "acme").state == "active"
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6

    console.fill("#confirm", "acme")
    console.submit("form.card button[type=submit]")
    assert console.path == f"/console/pools/{POOL}" and f"Released acme.{POOL}: its records are removed." in console.text()
    assert console.pdm.operators.allocation(POOL, "acme") is None
    assert tenant_records(fake.zone(POOL), "acme") == {}
    events = console.pdm.operators.history(POOL, "acme").events
    assert [(e.caller, e.origin) for e in events if e.action == "release"] == [("ops-alice", "console 127.0.0.1")]


def test_a_post_without_the_csrf_token_is_refused(console, fake):
    console.activate("acme")
    console.sign_in()
    console.open(f"/console/pools/{POOL}/tenants/acme/release")
    # The page's own form, sent without its token (as a forged form would be).
    console.driver.execute_script("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove());"
                                  "document.querySelector('#confirm').value = 'acme';")
    console.submit("form.card button[type=submit]")
    assert console.find("h1").text == "Not done: csrf-refused"
    assert console.pdm.operators.allocation(POOL, "acme").state == "active"
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6


def test_markup_a_caller_wrote_is_shown_as_text(console):
    written = '<img src=x id=injected onerror="document.title=1"><b id=bold>bold</b>'
    console.pdm.lifecycle.reserve(POOL, "shop", written, "catalyst")
    console.sign_in()
    console.open(f"/console/pools/{POOL}")
    cell = console.all("tbody tr td")[3]
    assert cell.text == written
    assert console.all("#injected") == [] and console.all("#bold") == []
    console.open(f"/console/changes?pool={POOL}")
    console.open(f"/console/pools/{POOL}/tenants/shop")
    assert written in console.text("dl.facts") and console.all("#injected") == []


def test_no_serious_accessibility_violation_on_any_page_light_or_dark(console, fake):
    console.activate("acme")
    console.pdm.lifecycle.reserve(POOL, "held", "catalyst-api", "catalyst")
    remove_records(fake, POOL, {"console.acme"})
    pages = ["/console/", f"/console/pools/{POOL}", f"/console/pools/{POOL}/tenants/acme", "/console/changes",
             f"/console/pools/{POOL}/drift", f"/console/pools/{POOL}/retry",
             f"/console/pools/{POOL}/tenants/acme/release", f"/console/pools/{POOL}/tenants/held/renew",
             "/console/pools/not-a-pool.example", "/console/webhooks"]
    found = {}
    for scheme in ("light", "dark"):
        color_scheme(console.driver, scheme)
        console.driver.delete_all_cookies()
        console.open("/console/login")
        found[(scheme, "/console/login")] = axe_violations(console.driver)
        console.sign_in()
        for page in pages:
            console.open(page)
            found[(scheme, page)] = axe_violations(console.driver)
    assert {k: v for k, v in found.items() if v} == {}
    assert len(found) == 2 * (len(pages) + 1)


def test_every_page_fits_a_phones_width(console, fake):
    """Readable on a phone: nothing wider than the screen but the tables, which scroll in
    their own box."""
    console.activate("acme")
    console.sign_in()
    console.driver.set_window_size(390, 844)
    try:
        for page in ("/console/", f"/console/pools/{POOL}", f"/console/pools/{POOL}/tenants/acme",
                     "/console/changes", f"/console/pools/{POOL}/drift", f"/console/pools/{POOL}/retry",
                     f"/console/pools/{POOL}/tenants/acme/release", "/console/webhooks"):
            console.open(page)
            width = console.driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (page, width)
    finally:
        console.driver.set_window_size(1280, 900)


def test_the_webhooks_page_with_endpoints_reads_well_and_replays_a_message(serve, app_factory, postgres_url, fake):
    """The webhooks page with endpoints and messages (none delivered: nothing listens at
    their URLs): no serious accessibility violation light or dark, a phone's width, and a
    message replayed from its row."""
    config = [{"url": NOWHERE + "/hooks", "secret": new_secret()},
              {"url": NOWHERE, "secret": new_secret(), "name": "releases", "events": ["allocation.released"]}]
    hooks = WebhookSettings(endpoints=parse_endpoints(json.dumps(config)))
    console = serve(console_app(app_factory, postgres_url, webhooks=hooks))
    console.activate("acme")
    console.sign_in()
    found = {}
    for scheme in ("light", "dark"):
        color_scheme(console.driver, scheme)
        console.open("/console/webhooks")
        found[scheme] = axe_violations(console.driver)
    assert found == {"light": [], "dark": []}
    console.driver.set_window_size(390, 844)
    try:
        width = console.driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
    finally:
        console.driver.set_window_size(1280, 900)
    assert len(console.all("tbody tr")) == 3  # reserved, committed, published: for the first endpoint only
    console.submit("tbody tr:first-child button")
    assert console.path == "/console/webhooks" and "Replayed 1 message(s)" in console.text(".flash")


def test_the_screenshot_files_the_readme_shows_are_pngs():
    for name in ("console-pool.png", "console-tenant.png"):
        data = Path(SCREENSHOTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


