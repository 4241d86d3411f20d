"""The chart's alerts and dashboard, proven with Debian's Prometheus (tests marked
``prometheus``, see conftest.prometheus_tools; CI requires them).

- ``promtool check rules`` on the rules exactly as the chart renders them, and ``promtool
  test rules`` with tests/alerts/alerts_test.yaml: per alert a case where it fires and one
  where it stays quiet. Each alert's expression is then broken in turn (made never to
  fire, then always to fire) and its cases must notice.
- A real Prometheus scraping the running service (gunicorn, two workers, PostgreSQL, the
  fake Dynadot, a webhook receiver) with the chart's rules rendered at low thresholds:
  a blocked pool, a throttling registrar, a DNS backlog and rate-limit hits make the
  matching alerts go pending, and every query of the dashboard is valid and finds series.
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from chart_support import Rendered
from conftest import API_KEY, BASE_RECORDS, POOL, POOLS, Gunicorn, free_port, truncate
from pdm_app.testing.fake_dynadot import FakeDynadot
from pdm_app.testing.webhook_receiver import WebhookReceiver, new_secret

pytestmark = pytest.mark.slow

CASES = Path(__file__).resolve().parent.parent / "alerts" / "alerts_test.yaml"
JOB = "pool-domain-manager"
# What "never" and "always" make of an alert when its expression is broken on purpose.
NEVER, ALWAYS = "vector(1) == 0", "vector(1)"


def render(values: dict | None = None) -> Rendered:
    monitoring = {"monitoring": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}}
    for key, value in (values or {}).items():
        monitoring["monitoring"]["prometheusRule"][key] = value
    return Rendered(monitoring)


def rule_groups(rendered: Rendered) -> dict:
    """The PrometheusRule's spec: a Prometheus rule file as it stands (``groups``)."""
    return rendered.one("PrometheusRule")["spec"]


def dashboard(rendered: Rendered) -> dict:
    cm = rendered.one("ConfigMap", f"{JOB}-dashboard")
    (text,) = cm["data"].values()
    return json.loads(text)


def promtool(tools: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tools["promtool"], *args], capture_output=True, text=True, timeout=120)


def write_unit_tests(folder: Path, groups: dict, cases: dict) -> Path:
    """rules.yaml (``groups``) and the promtool unit tests (``cases``) side by side."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(yaml.safe_dump(groups))
    tests = folder / "alerts_test.yaml"
    tests.write_text(yaml.safe_dump(cases, sort_keys=False))
    return tests


def cases_of(cases: dict, alert: str, firing: bool) -> dict:
    """The test groups of ``cases`` about ``alert`` alone that expect it to fire (or not)."""
    kept = [group for group in cases["tests"]
            if {t["alertname"] for t in group["alert_rule_test"]} == {alert}
            and all(bool(t.get("exp_alerts")) == firing for t in group["alert_rule_test"])]
    return {**cases, "tests": kept}


def broken(groups: dict, alert: str, expr: str) -> dict:
    out = copy.deepcopy(groups)
    for group in out["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    return out


# -- promtool ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_rules() -> dict:
    return rule_groups(render())


@pytest.fixture(scope="module")
def cases() -> dict:
    return yaml.safe_load(CASES.read_text())


def test_promtool_checks_the_rendered_rules(prometheus_tools, default_rules, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(default_rules))
    checked = promtool(prometheus_tools, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = sum(len(g["rules"]) for g in default_rules["groups"])
    assert f"SUCCESS: {count} rules found" in checked.stdout


def test_promtool_unit_tests_of_every_alert_pass(prometheus_tools, default_rules, cases, tmp_path):
    tests = write_unit_tests(tmp_path, default_rules, cases)
    result = promtool(prometheus_tools, "test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet(default_rules, cases):
    alerts = [r["alert"] for g in default_rules["groups"] for r in g["rules"]]
    for alert in alerts:
        assert cases_of(cases, alert, firing=True)["tests"], f"{alert}: no case where it fires"
        assert cases_of(cases, alert, firing=False)["tests"], f"{alert}: no case where it stays quiet"
    tested = {t["alertname"] for g in cases["tests"] for t in g["alert_rule_test"]}
    assert tested == set(alerts)


def test_each_alerts_cases_fail_when_its_expression_is_broken(prometheus_tools, default_rules, cases, tmp_path):
    # The cases would catch a rule that never fires, or fires whatever the series say.
    for rule in (r for g in default_rules["groups"] for r in g["rules"]):
        alert = rule["alert"]
        for firing, expr in ((True, NEVER), (False, ALWAYS)):
            tests = write_unit_tests(tmp_path / f"{alert}-{expr.replace(' ', '')}", broken(default_rules, alert, expr),
                                     cases_of(cases, alert, firing))
            result = promtool(prometheus_tools, "test", "rules", str(tests))
            assert result.returncode != 0, f"{alert}: its {'firing' if firing else 'quiet'} cases pass with {expr!r}"
            assert f"alertname: {alert}" in result.stdout + result.stderr
        # Unbroken, the same selections pass: it is the break they notice.
        for firing in (True, False):
            tests = write_unit_tests(tmp_path / f"{alert}-{firing}", default_rules, cases_of(cases, alert, firing))
            assert promtool(prometheus_tools, "test", "rules", str(tests)).returncode == 0, alert


# -- a real Prometheus against the running service ------------------------------------------

class Prometheus:
    """Debian's prometheus in a folder of its own, on a free loopback port, scraping
    ``target`` every second and evaluating ``rules`` every second."""

    def __init__(self, binary: str, folder: Path, target: str, rules: dict):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "rules.yaml").write_text(yaml.safe_dump(rules))
        (folder / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(folder / "rules.yaml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }))
        self.log = open(folder / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            cwd=folder, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._ready, 60, "prometheus ready", self.output)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.output()}")
        try:
            return requests.get(self.url + "/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def api(self, path: str, **params) -> dict:
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def output(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def wait_for(condition, timeout: float, what: str, details=lambda: "") -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what}: not seen in {timeout:.0f}s\n{details()}")


# The alerts the drive below makes true, rendered to stay pending (`for` far away) at low
# thresholds; the others keep the chart's defaults and must stay quiet.
DRIVEN = {
    "PdmPoolBlocked": {"for": "1h"},
    "PdmPoolFailing": {"for": "1h"},
    "PdmDnsWorkStale": {"for": "1h", "seconds": 2},
    "PdmRegistrarThrottled": {"for": "1h", "window": "30s"},
    "PdmRateLimited": {"for": "1h", "perSecond": 0.01, "window": "15s"},
}
BLOCKED_POOL, THROTTLED_POOL, GOOD_POOL = "openova.io", "omani.works", POOL
WEBHOOK_ENDPOINT = "receiver"


class Hammer:
    """Asks /check faster than its limit (PDM_RATE_LIMITS check=2/second) until stopped,
    so that pdm_rate_limited_total keeps rising while Prometheus looks."""

    def __init__(self, base: str):
        self.base = base
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(0.05):
                answer = session.get(f"{self.base}/api/v1/pool/{GOOD_POOL}/check", params={"sub": "busy"}, timeout=10)
                self.refused += answer.status_code == 429

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def commit(base: str, pool: str, sub: str) -> int:
    token = requests.post(f"{base}/api/v1/pool/{pool}/reserve", json={"subdomain": sub}, timeout=30)
    assert token.status_code == 201, token.text
    answer = requests.post(f"{base}/api/v1/pool/{pool}/commit", timeout=30, json={
        "subdomain": sub, "reservationToken": token.json()["reservationToken"], "loadBalancerIP": "198.51.100.7"})
    assert answer.status_code in (200, 201, 202), answer.text
    return answer.status_code


def metric(base: str, name: str) -> str:
    return "\n".join(line for line in requests.get(base + "/metrics", timeout=10).text.splitlines()
                     if line.startswith(name))


@pytest.fixture(scope="module")
def monitored(prometheus_tools, pg_url, tmp_path_factory):
    """The service under a real Prometheus, driven into the alerts of ``DRIVEN``."""
    truncate(pg_url)
    folder = tmp_path_factory.mktemp("prometheus")
    fake = FakeDynadot(api_key=API_KEY).start()
    for pool in POOLS:
        # The blocked pool's domain answers with other name servers: no pass may write it.
        fake.seed(pool, list(BASE_RECORDS), ttl=300,
                  ns_type="Dynadot Parking" if pool == BLOCKED_POOL else "Dynadot DNS")
    secret = new_secret()
    receiver = WebhookReceiver(secret).start()
    server = prometheus = hammer = None
    try:
        server = Gunicorn(
            pg_url, fake, folder / "gunicorn.log",
            PDM_DNS_REQUEST_BUDGET="2s",
            PDM_RATE_LIMITS="check=2/second",
            PDM_WEBHOOKS=json.dumps([{"url": receiver.url, "secret": secret, "name": WEBHOOK_ENDPOINT}]),
            PDM_WEBHOOK_RETRY_SCHEDULE="1s",
        ).start()
        rendered = render({"alerts": DRIVEN})
        prometheus = Prometheus(prometheus_tools["prometheus"], folder, f"127.0.0.1:{server.port}",
                                rule_groups(rendered))
        # A good pool: a tenant published, its zone read (records vs limit, a resync), and
        # its webhooks delivered.
        assert commit(server.url, GOOD_POOL, "acme") in (200, 201)
        # The blocked pool: its first pass reads other name servers.
        commit(server.url, BLOCKED_POOL, "shop")
        wait_for(lambda: f'pool="{BLOCKED_POOL}"' in metric(server.url, "pdm_dns_pool_blocked"), 60,
                 "the pool blocked", server.output)
        # The registrar throttles every call from now on: each pause (a minute) is followed
        # by another, the pool's passes fail and its work piles up.
        fake.inject("throttle", times=1_000_000)
        commit(server.url, THROTTLED_POOL, "late")
        hammer = Hammer(server.url)
        yield server, prometheus, rendered, receiver
    finally:
        for running in (hammer, prometheus, server):
            if running is not None:
                running.stop()
        receiver.stop()
        fake.clear_faults()
        fake.stop()
        shutil.rmtree(folder / "data", ignore_errors=True)


def active(prometheus: Prometheus) -> dict[tuple, str]:
    """(alertname, pool/provider/scope/endpoint) -> state, of the alerts Prometheus holds."""
    out = {}
    for alert in prometheus.alerts():
        labels = alert["labels"]
        subject = next((labels[k] for k in ("pool", "provider", "scope", "endpoint") if k in labels), None)
        out[(labels["alertname"], subject)] = alert["state"]
    return out


def test_driven_alerts_go_pending_against_the_running_service(monitored):
    server, prometheus, _, _ = monitored
    expected = {("PdmPoolBlocked", BLOCKED_POOL), ("PdmPoolFailing", THROTTLED_POOL),
                ("PdmDnsWorkStale", THROTTLED_POOL), ("PdmRegistrarThrottled", "dynadot"),
                ("PdmRateLimited", "check")}
    wait_for(lambda: expected <= set(active(prometheus)), 120, "the driven alerts pending",
             lambda: f"{active(prometheus)}\n{server.output()[-3000:]}")
    now = active(prometheus)
    assert {key: now[key] for key in expected} == {key: "pending" for key in expected}
    # Nothing else: the service is up, ready, on its database, with one job leader, and
    # its webhooks go out.
    assert {name for name, _ in now} <= {name for name, _ in expected}, now
    blocked = next(a for a in prometheus.alerts() if a["labels"]["alertname"] == "PdmPoolBlocked")
    assert blocked["labels"] == {"alertname": "PdmPoolBlocked", "job": JOB, "pool": BLOCKED_POOL,
                                 "reason": "not-dynadot-dns", "severity": "critical"}
    assert BLOCKED_POOL in blocked["annotations"]["description"]
    assert blocked["annotations"]["runbook_url"].endswith("/PdmPoolBlocked.md")


def dashboard_queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expression) of every target, Grafana's variables substituted: the
    job, every pool, and a rate interval of several scrapes."""
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "15s").replace("$job", JOB)
                    .replace("$pool", ".*"))
            assert "$" not in expr, (panel["title"], expr)
            out.append((panel["title"], expr))
    return out


def is_webhook_panel(title: str) -> bool:
    return "ebhook" in title


def test_every_dashboard_query_is_valid_and_finds_series(monitored):
    server, prometheus, rendered, _ = monitored
    board = dashboard(rendered)
    queries = [(t, e) for t, e in dashboard_queries(board) if not is_webhook_panel(t)]
    assert len(queries) >= 20
    # The variables' own queries: label_values(pdm_database_up, job), then the pools.
    wait_for(lambda: JOB in prometheus.api("label/job/values", **{"match[]": "pdm_database_up"}), 60, "the job")
    wait_for(lambda: len(prometheus.api("label/pool/values", **{"match[]": f'pdm_allocations{{job="{JOB}"}}'})) >= 2,
             60, "the pools")
    # Wait for the drive to show (the alerts test may not have run first), then each
    # query must answer with at least one series.
    empty = []

    def all_found() -> bool:
        empty[:] = [(t, e) for t, e in queries if not prometheus.query(e)]
        return not empty

    wait_for(all_found, 120, "every dashboard query finding series", lambda: "\n".join(map(str, empty)))


def test_the_webhook_panels_show_the_deliveries(monitored):
    server, prometheus, rendered, receiver = monitored
    assert receiver.wait_for(lambda deliveries: any(d.verified for d in deliveries), 60), "no webhook delivered"
    queries = [(t, e) for t, e in dashboard_queries(dashboard(rendered)) if is_webhook_panel(t)]
    assert len(queries) >= 5
    empty = []

    def all_found() -> bool:
        empty[:] = [(t, e) for t, e in queries if not prometheus.query(e)]
        return not empty

    wait_for(all_found, 60, "every webhook panel finding series", lambda: "\n".join(map(str, empty)))
    delivered = prometheus.query(f'sum(pdm_webhook_deliveries_total{{job="{JOB}", endpoint="{WEBHOOK_ENDPOINT}", '
                                 'outcome="delivered"})')
    assert float(delivered[0]["value"][1]) >= 1
