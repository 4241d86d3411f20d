"""The operators' command line (``pool-domain-manager``): every command against both
databases and the fake Dynadot, its exit codes and --json. The installed console script
as a subprocess: tests/e2e/test_cli.py."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from conftest import POOL, POOLS, ROOT, alembic_config, break_pool, mend, tenant_records
from pdm_app.cli import cli
from pdm_app.domain import utcnow
from pdm_app.models import SCHEMA_REVISION
from pdm_app.dns.zone import Record
from unit.test_cli import PROG, _root_logger_kept  # noqa: F401 -- an autouse fixture: put back here too

LB = "198.51.100.7"


def run(app, *args, **kwargs):
    """Run a command against ``app`` (the test's own, wired to the fake and the test db)."""
    return app.test_cli_runner().invoke(cli, list(args), prog_name=PROG, **kwargs)


def error_line(result):
    """The command's own message: the last line on stderr (log lines may come before)."""
    return result.stderr.strip().splitlines()[-1]


def out_json(result):
    assert result.exit_code in (0, 1), (result.exit_code, result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def reserve(client, sub, pool=POOL):
    response = client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def reserve_commit(client, sub, ip=LB, status=200):
    token = reserve(client, sub)["reservationToken"]
    response = client.post(f"/api/v1/pool/{POOL}/commit",
                           json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": ip})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def parse_ts(text):
    assert text.endswith("Z")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def test_usage_errors_exit_2(app):
    assert run(app, "list").exit_code == 2  # missing POOL
    assert run(app, "list", POOL, "--state", "gone").exit_code == 2
    assert run(app, "history", POOL, "--limit", "0").exit_code == 2
    assert run(app, "renew", POOL, "x", "--ttl", "soon").exit_code == 2
    assert run(app, "renew", POOL, "x", "--ttl", "0").exit_code == 2
    result = run(app, "reconcile", POOL, "--force")
    assert result.exit_code == 2 and "--force only goes with --apply" in result.stderr
    assert run(app, "nonsense").exit_code == 2


@pytest.mark.parametrize("args", [
    ["list", "nope.example"], ["history", "nope.example"], ["release", "nope.example", "acme"],
    ["renew", "nope.example", "acme"], ["dns", "pending", "nope.example"], ["dns", "retry", "nope.example"],
    ["drift", "nope.example"], ["reconcile", "nope.example"],
])
def test_unknown_pool_is_exit_1_with_the_code(app, args):
    for extra in ([], ["--json"]):
        result = run(app, *args, *extra)
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("error: unsupported-pool: 'nope.example' is not a managed pool domain")


# -- reads -----------------------------------------------------------------------------


def test_pools_list_and_check(app, client):
    reserve_commit(client, "acme")
    reserve(client, "beta")

    result = run(app, "pools")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["POOL", "DNS", "ACTIVE", "RESERVED", "PENDING", "DNS", "BLOCKED", "LAST", "GOOD",
                                "READ", "LAST", "RESYNC", "RESYNC", "FOREIGN", "SUB-HOSTS", "POOL", "DS", "AT",
                                "REGISTRAR"]
    row = next(line.split() for line in lines if line.startswith(POOL + " "))
    # a Dynadot pass reads the whole zone: the last good read is a resync too; none under way
    assert row[:6] == [POOL, "dynadot", "1", "1", "0", "-"] and row[6].endswith("Z") and row[7] == row[6]
    assert row[8:] == ["-", "2", "-"]
    assert {line.split()[0] for line in lines[1:]} == set(POOLS)

    listed = out_json(run(app, "pools", "--json"))
    by_pool = {p["poolDomain"]: p for p in listed}
    assert set(by_pool) == set(POOLS)
    mine = by_pool[POOL]
    assert (mine["active"], mine["reserved"], mine["pendingDnsCount"], mine["dnsBlocked"]) == (1, 1, 0, None)
    assert parse_ts(mine["syncedAt"]) and mine["foreignSubhostRecords"] == 2  # www, legacy
    assert (mine["dnsBackend"], mine["poolDs"], mine["poolDsCheck"]) == ("dynadot", [], None)
    assert by_pool["openova.io"]["syncedAt"] is None  # never read yet
    assert mine["resync"] == {"lastAt": mine["syncedAt"], "startedAt": None, "checked": 0, "total": 0}

    result = run(app, "list", POOL)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SUBDOMAIN", "STATE", "LB", "IP", "EXPIRES", "CREATED", "BY", "DNS", "PENDING"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["acme"] == ["acme", "active", LB, "-", "catalyst-api", "no"]
    assert rows["beta"][:3] == ["beta", "reserved", "-"] and rows["beta"][3].endswith("Z")

    body = out_json(run(app, "list", POOL, "--json"))
    assert body["poolDomain"] == POOL and body["pendingDns"] == [] and body["dnsBlocked"] is None
    allocations = {a["subdomain"]: a for a in body["allocations"]}
    assert allocations["acme"]["state"] == "active" and allocations["acme"]["loadBalancerIP"] == LB
    assert allocations["acme"]["dnsPending"] is False and "expiresAt" not in allocations["acme"]
    assert parse_ts(allocations["beta"]["expiresAt"]) and parse_ts(allocations["beta"]["reservedAt"])
    assert "reservationToken" not in json.dumps(body) and "token" not in allocations["beta"]

    body = out_json(run(app, "list", POOL, "--state", "active", "--json"))
    assert [a["subdomain"] for a in body["allocations"]] == ["acme"]
    result = run(app, "list", "openova.io")
    assert result.exit_code == 0 and result.stdout.strip() == "no allocations in openova.io"

    # check: 0 available, 1 not
    result = run(app, "check", POOL, "gamma")
    assert result.exit_code == 0 and result.stdout.strip() == f"gamma.{POOL} is available"
    result = run(app, "check", POOL, "acme")
    assert result.exit_code == 1 and result.stdout.startswith("not available: active-state:")
    assert out_json(run(app, "check", POOL, "beta", "--json")) == {
        "available": False, "reason": "reserved-state", "fqdn": f"beta.{POOL}",
        "detail": f"beta.{POOL} is held by another deployment in progress; try again in a few minutes, "
                  "or pick another name"}
    assert out_json(run(app, "check", POOL, "gamma", "--json")) == {"available": True, "fqdn": f"gamma.{POOL}"}
    result = run(app, "check", POOL, "api")
    assert result.exit_code == 1 and "reserved" in result.stdout
    result = run(app, "check", "nope.example", "acme")
    assert result.exit_code == 1 and "unsupported-pool" in result.stdout


def test_history_pages(app, client):
    for sub in ("one", "two", "three"):
        reserve(client, sub)  # one event each
    reserve_commit(client, "acme")  # reserve, commit, dns-published: six events in all

    result = run(app, "history", POOL, "--limit", "4")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "AT", "SUBDOMAIN", "ACTION", "CALLER", "LB", "IP", "DETAIL"]
    rows = [line.split() for line in lines[1:5]]
    assert [row[2:4] for row in rows] == [["acme", "dns-published"], ["acme", "commit"], ["acme", "reserve"],
                                         ["three", "reserve"]]
    assert rows[1][4:6] == ["anonymous", LB] and rows[2][5] == "-" and parse_ts(rows[0][1])
    hint = lines[-1]
    assert hint == f"older events: {PROG} history {POOL} --limit 4 --before {rows[-1][0]}"
    before = int(rows[-1][0])

    page = out_json(run(app, "history", POOL, "--limit", "4", "--json"))
    assert page["poolDomain"] == POOL and page["nextBefore"] == before
    assert [(e["subdomain"], e["action"]) for e in page["events"]][1:3] == [("acme", "commit"), ("acme", "reserve")]
    assert page["events"][1]["loadBalancerIP"] == LB and parse_ts(page["events"][1]["at"])
    assert page["events"][1]["caller"] == "anonymous"

    older = out_json(run(app, "history", POOL, "--limit", "4", "--before", str(before), "--json"))
    assert [(e["subdomain"], e["action"]) for e in older["events"]] == [("two", "reserve"), ("one", "reserve")]
    assert "nextBefore" not in older
    result = run(app, "history", POOL, "--limit", "4", "--before", str(before))
    assert result.exit_code == 0 and "older events" not in result.stdout
    assert [line.split()[2] for line in result.stdout.splitlines()[1:]] == ["two", "one"]

    only = out_json(run(app, "history", POOL, "two", "--json"))
    assert [(e["subdomain"], e["action"]) for e in only["events"]] == [("two", "reserve")]
    result = run(app, "history", "omani.works")
    assert result.exit_code == 0 and result.stdout.strip() == "no events"


# -- changes -----------------------------------------------------------------------------


def test_release(app, client, fake):
    reserve_commit(client, "acme")
    reserve(client, "beta")
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6

    result = run(app, "release", POOL, "acme", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"released acme.{POOL} (was active, {LB})", "DNS: records removed"]
    assert tenant_records(fake.zone(POOL), "acme") == {}

    body = out_json(run(app, "release", POOL, "beta", "--json"))
    assert body["dnsDone"] is True and body["freed"]["subdomain"] == "beta" and body["freed"]["state"] == "reserved"
    assert run(app, "check", POOL, "beta").exit_code == 0

    result = run(app, "release", POOL, "acme")
    assert result.exit_code == 1 and result.stderr.startswith("error: not-found: ")
    events = out_json(run(app, "history", POOL, "--json"))["events"]
    assert [(e["subdomain"], e["caller"]) for e in events if e["action"] == "release"] == [
        ("beta", "cli"), ("acme", "cli")]


def test_release_of_an_active_tenant_asks_for_its_name(app, client, fake, monkeypatch):
    reserve_commit(client, "acme")
    reserve(client, "beta")
    # no terminal, no --yes: refused in one line, nothing released
    result = run(app, "release", POOL, "acme")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: confirmation-required: acme.{POOL} is active (a live Sovereign); "
        "run this at a terminal to confirm, or pass --yes"]
    # a reserved name is released without asking
    assert run(app, "release", POOL, "beta").exit_code == 0
    # at a terminal: the name is typed
    monkeypatch.setattr("pdm_app.cli.allocations._stdin_is_terminal", lambda: True)
    result = run(app, "release", POOL, "acme", input="beta\n")
    assert result.exit_code == 1 and error_line(result) == f"error: not-confirmed: acme.{POOL} was not released"
    assert f"acme.{POOL} is active" in result.stderr and "Type acme to release it" in result.stderr
    assert len(tenant_records(fake.zone(POOL), "acme")) == 6
    assert out_json(run(app, "check", POOL, "acme", "--json"))["reason"] == "active-state"
    result = run(app, "release", POOL, "acme", input="acme\n")
    assert result.exit_code == 0, result.stderr
    assert f"released acme.{POOL} (was active, {LB})" in result.stdout
    assert tenant_records(fake.zone(POOL), "acme") == {}


def test_renew(app, client):
    reserved = reserve(client, "beta")
    before = parse_ts(reserved["expiresAt"])  # now + 10 minutes

    body = out_json(run(app, "renew", POOL, "beta", "--ttl", "30m", "--json"))
    after = parse_ts(body["expiresAt"])
    assert timedelta(minutes=19) <= after - before <= timedelta(minutes=21)
    assert body["state"] == "reserved" and "reservationToken" not in body

    result = run(app, "renew", POOL, "beta")  # the default TTL: back to about ten minutes
    assert result.exit_code == 0 and result.stdout.startswith(f"renewed beta.{POOL} until ")
    assert parse_ts(result.stdout.split()[-1]) < after

    result = run(app, "renew", POOL, "beta", "--ttl", "100h")  # past PDM_RESERVATION_MAX_TTL
    assert result.exit_code == 1 and result.stderr.startswith("error: invalid-ttl: ")
    result = run(app, "renew", POOL, "ghost")
    assert result.exit_code == 1 and result.stderr.startswith("error: not-found: ")
    events = out_json(run(app, "history", POOL, "beta", "--json"))["events"]
    assert [(e["action"], e["caller"]) for e in events][:2] == [("renew", "cli"), ("renew", "cli")]


def test_sweep(app, client):
    reserve(client, "late")
    reserve_commit(client, "acme")
    assert out_json(run(app, "sweep", "--json")) == {"swept": 0}
    service = app.extensions["pdm"].lifecycle
    service.clock = lambda: utcnow() + timedelta(hours=1)  # the reservation has lapsed
    result = run(app, "sweep")
    assert result.exit_code == 0 and result.stdout.strip() == "swept 1 lapsed reservation(s)"
    assert [a["subdomain"] for a in out_json(run(app, "list", POOL, "--json"))["allocations"]] == ["acme"]


# -- DNS ----------------------------------------------------------------------------------


def test_dns_pending_and_retry(app, client, fake):
    result = run(app, "dns", "pending")
    assert result.exit_code == 0 and result.stdout.strip() == "no pending DNS work"
    assert out_json(run(app, "dns", "retry", "--json")) == {}

    reserve_commit(client, "acme")  # reads the zone first
    fake.inject("error", times=100)
    reserve_commit(client, "beta", status=202)

    work = out_json(run(app, "dns", "pending", "--json"))
    assert [(w["poolDomain"], w["subdomain"], w["action"]) for w in work] == [(POOL, "beta", "publish")]
    assert work[0]["attempts"] >= 1 and work[0]["lastError"] and parse_ts(work[0]["nextAttemptAt"])
    result = run(app, "dns", "pending", POOL)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split()[:3] == [POOL, "beta", "publish"]
    assert out_json(run(app, "dns", "pending", "openova.io", "--json")) == []
    assert out_json(run(app, "pools", "--json"))[1]["pendingDnsCount"] == 1
    assert out_json(run(app, "list", POOL, "--json"))["allocations"][1]["dnsPending"] is True

    # the registrar still fails: the pass is not done, exit 1, and why is shown
    result = run(app, "dns", "retry", POOL)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout.splitlines()[0] == f"{POOL}: NOT done"
    assert "beta" in result.stdout

    fake.clear_faults()
    assert out_json(run(app, "dns", "retry", "--json")) == {POOL: True}
    assert len(tenant_records(fake.zone(POOL), "beta")) == 6
    assert out_json(run(app, "dns", "pending", "--json")) == []
    result = run(app, "dns", "retry")
    assert result.exit_code == 0 and result.stdout.strip() == "no pending DNS work"

    # a release while the registrar fails: freed, its DNS removal queued
    fake.inject("error", times=100)
    result = run(app, "release", POOL, "beta", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1] == (f"DNS: removal queued; it is retried automatically "
                                             f"(see '{PROG} dns pending {POOL}')")
    body = out_json(run(app, "release", POOL, "acme", "--yes", "--json"))
    assert body["dnsDone"] is False and body["freed"]["state"] == "active"
    assert sorted((w["subdomain"], w["action"]) for w in out_json(run(app, "dns", "pending", "--json"))) == [
        ("acme", "remove"), ("beta", "remove")]
    fake.clear_faults()
    result = run(app, "dns", "retry")
    assert result.exit_code == 0 and result.stdout.strip() == f"{POOL}: done"
    assert tenant_records(fake.zone(POOL), "acme") == {} and tenant_records(fake.zone(POOL), "beta") == {}


def test_drift_and_reconcile(app, client, fake):
    reserve_commit(client, "acme")
    reserve_commit(client, "beta", ip="198.51.100.8")
    assert run(app, "drift", POOL).exit_code == 0

    # by hand: a tenant record deleted, another pointed elsewhere
    zone = fake.zone(POOL)
    records = [replace(r, value="192.0.2.99") if r.host == "api.beta" else r
               for r in zone.records if r.host != "console.acme"]
    fake.seed(POOL, records, ttl=zone.ttl)

    result = run(app, "drift", POOL)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout.startswith(f"{POOL}: drift (checked ")
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert ["acme", "active", "missing", "console.acme", "-", "-"] in rows
    assert ["beta", "active", "wrong", "address", "api.beta", "192.0.2.99", "198.51.100.8"] in rows

    report = out_json(run(app, "drift", POOL, "--json"))
    assert report["clean"] is False and report["poolDomain"] == POOL and parse_ts(report["checkedAt"])
    names = {n["subdomain"]: n for n in report["names"]}
    assert names["acme"]["missing"] == ["console.acme"] and names["acme"]["state"] == "active"
    assert names["beta"]["wrongAddress"] == [{"host": "api.beta", "found": ["192.0.2.99"],
                                              "expected": "198.51.100.8"}]

    # reconcile without --apply: the drift and the plan, nothing written
    calls = len(fake.calls)
    result = run(app, "reconcile", POOL)
    assert result.exit_code == 1
    assert f"publish  console.acme A {LB}" in result.stdout
    assert "correct  api.beta A 192.0.2.99 -> 198.51.100.8" in result.stdout
    assert [c[0] for c in fake.calls[calls:]] == ["get_dns"]
    assert "console.acme" not in tenant_records(fake.zone(POOL), "acme")
    body = out_json(run(app, "reconcile", POOL, "--json"))
    assert body["applied"] is False and body["after"] is None and body["before"]["clean"] is False

    result = run(app, "reconcile", POOL, "--apply")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "\napplied\n" in result.stdout and f"{POOL}: no drift" in result.stdout.split("after:")[1]
    assert tenant_records(fake.zone(POOL), "acme")["console.acme"] == LB
    assert tenant_records(fake.zone(POOL), "beta")["api.beta"] == "198.51.100.8"
    assert run(app, "drift", POOL).exit_code == 0

    body = out_json(run(app, "reconcile", POOL, "--apply", "--json"))
    assert body["applied"] is True and body["before"]["clean"] and body["after"]["clean"] and body["error"] is None
    events = out_json(run(app, "history", POOL, "--json"))["events"]
    assert events[0]["action"] == "reconcile" and events[0]["caller"] == "cli"


def test_reconcile_refuses_a_large_repair_without_force(app, client, fake):
    reserve_commit(client, "acme")
    reserve_commit(client, "beta", ip="198.51.100.8")
    # 12 of the service's records; by hand, 4 of them (33%) pointed elsewhere
    moved = {"*.beta", "console.beta", "gitea.beta", "api.acme"}
    zone = fake.zone(POOL)
    fake.seed(POOL, [replace(r, value="192.0.2.99") if r.host in moved else r for r in zone.records], ttl=zone.ttl)
    calls = len(fake.calls)
    events = len(out_json(run(app, "history", POOL, "--json"))["events"])

    result = run(app, "reconcile", POOL, "--apply")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    # the plan, then the refusal
    assert "correct  console.beta A 192.0.2.99 -> 198.51.100.8" in result.stdout
    assert f"correct  api.acme A 192.0.2.99 -> {LB}" in result.stdout
    line = error_line(result)
    assert line.startswith(f"error: unsafe-plan: {POOL}: ") and "4 of them (33%) changed" in line
    assert "12 record(s)" in line and "--force" in line
    # nothing written, nothing recorded
    assert [c[0] for c in fake.calls[calls:]] == ["get_dns"]
    assert tenant_records(fake.zone(POOL), "beta")["console.beta"] == "192.0.2.99"
    assert len(out_json(run(app, "history", POOL, "--json"))["events"]) == events

    body = json.loads(run(app, "reconcile", POOL, "--apply", "--json").stdout)
    assert body["applied"] is False and "33%" in body["error"] and "--force" in body["error"]
    assert len(body["before"]["names"]) == 2

    result = run(app, "reconcile", POOL, "--apply", "--force")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert tenant_records(fake.zone(POOL), "beta")["console.beta"] == "198.51.100.8"
    assert run(app, "drift", POOL).exit_code == 0


def test_logs_go_to_stderr(app, client):
    """The service's log lines go to stderr (only warnings and errors without -v), and
    the handler is put back afterwards."""
    from pdm_app.logs import StdoutHandler

    reserve_commit(client, "acme")
    reserve_commit(client, "beta")
    root = logging.getLogger()
    assert any(type(h) is StdoutHandler for h in root.handlers)
    result = run(app, "release", POOL, "acme", "--yes", "--json")
    assert json.loads(result.stdout)["freed"]["subdomain"] == "acme"
    assert result.stderr == ""
    result = run(app, "-v", "release", POOL, "beta", "--yes", "--json")
    assert json.loads(result.stdout)["freed"]["subdomain"] == "beta"
    logged = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(e["level"] == "info" and e["message"].startswith("released beta") for e in logged)
    assert any(type(h) is StdoutHandler for h in root.handlers)


def test_database_down_is_exit_1(fake):
    from conftest import make_settings
    from pdm_app import create_app

    app = create_app(make_settings("postgresql+psycopg://x@127.0.0.1:1/none", fake))
    try:
        result = run(app, "pools")
    finally:
        app.extensions["pdm"].engine.dispose()
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: database-unavailable: the database cannot be reached")


def test_reconcile_force_lifts_a_block(app, client, fake):
    reserve_commit(client, "acme")
    # by hand: a record that is not the service's deleted (the pass refuses to write such
    # a read back), a tenant record lost, and leftovers of a name nobody holds
    zone = fake.zone(POOL)
    records = [r for r in zone.records if r.host not in ("www", "console.acme")]
    fake.seed(POOL, records + [Record("*.old", "a", "192.0.2.5"), Record("api.old", "a", "192.0.2.5")], ttl=zone.ttl)

    result = run(app, "reconcile", POOL)
    assert result.exit_code == 1
    assert "remove   *.old" in result.stdout and "remove   api.old" in result.stdout
    result = run(app, "reconcile", POOL, "--apply")
    assert result.exit_code == 1
    assert "\nNOT applied\n" in result.stdout
    # the pass logged its refusal (an error line, JSON); the command's own error comes last
    assert json.loads(result.stderr.splitlines()[0])["level"] == "error"
    assert error_line(result).startswith("error: lost-foreign-records: the zone read back lacks 1 record(s)")
    assert error_line(result).endswith(f"'{PROG} reconcile {POOL} --apply --force'")
    status = {p["poolDomain"]: p for p in out_json(run(app, "pools", "--json"))}[POOL]
    assert status["dnsBlocked"]["reason"] == "lost-foreign-records" and parse_ts(status["dnsBlocked"]["since"])
    assert "lost-foreign-records" in run(app, "pools").stdout
    listing = out_json(run(app, "list", POOL, "--json"))
    assert listing["dnsBlocked"]["reason"] == "lost-foreign-records"
    assert "DNS blocked (lost-foreign-records)" in run(app, "list", POOL).stdout
    result = run(app, "dns", "retry", POOL)
    assert result.exit_code == 1 and f"{POOL}: DNS blocked (lost-foreign-records)" in result.stdout

    body = out_json(run(app, "reconcile", POOL, "--apply", "--force", "--json"))
    assert body["applied"] is True and body["after"]["clean"] is True and body["error"] is None
    assert body["before"]["dnsBlocked"]["reason"] == "lost-foreign-records"
    assert {n["subdomain"]: n["orphans"] for n in body["before"]["names"]}["old"] == ["*.old", "api.old"]
    zone = fake.zone(POOL)
    assert tenant_records(zone, "acme")["console.acme"] == LB
    assert not [r for r in zone.records if r.host.endswith("old")]
    assert run(app, "drift", POOL).exit_code == 0


# -- migrations ------------------------------------------------------------------------


def test_a_pool_whose_pass_raises_is_one_line_per_command_never_a_traceback(app, client, fake):
    reserve_commit(client, "acme")
    break_pool(app, POOL, KeyError("Subhost"))
    cause = "KeyError: 'Subhost'"
    for args in (["dns", "retry", POOL], ["dns", "retry"]):
        result = run(app, *args)
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
        assert f"{POOL}: NOT done" in result.stdout.splitlines()
        assert error_line(result) == f"error: dns-pass-failed: {POOL}: {cause}"
        assert "Traceback" not in result.stdout + result.stderr
    for args in (["drift", POOL], ["reconcile", POOL], ["reconcile", POOL, "--apply"]):
        result = run(app, *args)
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
        assert error_line(result) == f"error: dns-read-failed: the DNS of {POOL} could not be read: {cause}"
        assert "Traceback" not in result.stdout + result.stderr
    status = out_json(run(app, "pools", "--json"))[1]
    assert status["poolDomain"] == POOL and status["dnsFailing"]["error"] == cause
    assert f"{POOL}: DNS passes failing since " in run(app, "pools").stdout
    # -v keeps the traceback in the log lines, for whoever debugs it
    assert "Traceback" in run(app, "-v", "dns", "retry", POOL).stderr
    mend(app, POOL)
    assert out_json(run(app, "dns", "retry", "--json")) == {POOL: True}
    assert out_json(run(app, "pools", "--json"))[1]["dnsFailing"] is None


def test_db_upgrade(db_url, tmp_path):
    command.downgrade(alembic_config(db_url), "base")
    engine = create_engine(db_url)
    try:
        assert "pool_allocations" not in inspect(engine).get_table_names()
        runner = CliRunner()
        env = {"PDM_DATABASE_URL": db_url}
        result = runner.invoke(cli, ["db", "upgrade", "--config", os.path.join(ROOT, "alembic.ini")],
                               prog_name=PROG, env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        assert result.stdout.strip() == f"database at revision {SCHEMA_REVISION} (head)"
        assert "pool_allocations" in inspect(engine).get_table_names()
        # again: nothing to do
        result = runner.invoke(cli, ["db", "upgrade", "--config", os.path.join(ROOT, "alembic.ini"), "--json"],
                               prog_name=PROG, env=env)
        assert result.exit_code == 0 and json.loads(result.stdout) == {"revision": SCHEMA_REVISION}

        cwd = os.getcwd()
        os.chdir(tmp_path)  # no alembic.ini here
        try:
            result = runner.invoke(cli, ["db", "upgrade"], prog_name=PROG, env=env)
        finally:
            os.chdir(cwd)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: no-alembic-config: {tmp_path / 'alembic.ini'} does not exist")

        result = runner.invoke(cli, ["db", "upgrade", "--config", os.path.join(ROOT, "alembic.ini")],
                               prog_name=PROG, env={"PDM_DATABASE_URL": "mysql://x@db/pdm"})
        assert result.exit_code == 2
        assert result.stderr.startswith(f"{PROG}: configuration error: PDM_DATABASE_URL must be")
    finally:
        engine.dispose()
        command.upgrade(alembic_config(db_url), "head")
