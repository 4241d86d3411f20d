"""One pool's fault is that pool's alone: any exception in a pool's pass (an answer the
client could not read, a bug) fails that pool visibly -- last error, failing since, a
dns-failed event, the metrics, /healthz -- and the other pools' passes go on in the same
tick; a request waiting on such a pass answers 202; a later good pass clears it."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from conftest import API_KEY, POOL, break_pool, mend, tenant_records
from pdm_app import metrics
from pdm_app.dns import bookkeeping
from pdm_app.domain import utcnow

LB = "198.51.100.7"
# Pools are passed in name order: the failing one comes first, before the others' work.
BROKEN = "omani.works"
OTHER = "openova.io"


@pytest.fixture
def make_app(db_url, app_factory):
    return lambda **overrides: app_factory(db_url, **{"dns_request_budget": 1.5, **overrides})


def later(app, seconds):
    app.extensions["pdm"].publisher.clock = lambda: utcnow() + timedelta(seconds=seconds)


def commit(client, pool, sub, ip=LB):
    answer = client.post(f"/api/v1/pool/{pool}/reserve", json={"subdomain": sub})
    assert answer.status_code == 201, answer.get_json()
    token = answer.get_json()["reservationToken"]
    return client.post(f"/api/v1/pool/{pool}/commit",
                       json={"subdomain": sub, "reservationToken": token, "loadBalancerIP": ip})


def listed(client, pool):
    return client.get(f"/api/v1/pool/{pool}/list").get_json()


def events(client, pool):
    return client.get(f"/api/v1/pool/{pool}/history").get_json()["events"]


def failures(pool, reason="unexpected"):
    return metrics.DNS_PASS_FAILURES.labels(pool, reason)._value.get()


def test_a_pool_whose_pass_raises_fails_alone_and_the_other_pools_work_goes_out(make_app, fake, caplog):
    app = make_app()
    client = app.test_client()
    pdm = app.extensions["pdm"]
    assert pdm.jobs.retry_dns() == 3  # every pool's zone read once
    # openova.io gets work queued (its registrar call fails once) ...
    fake.inject("error", times=1, command="get_dns")
    assert commit(client, OTHER, "acme").status_code == 202
    # ... and omani.works, before it in every tick, breaks in a way nobody planned for
    break_pool(app, BROKEN, KeyError("Subhost"))
    before = failures(BROKEN)

    answer = commit(client, BROKEN, "beta")
    assert answer.status_code == 202, answer.get_json()  # never a 500
    assert answer.get_json()["state"] == "active" and answer.get_json()["warning"] == "dns-pending"
    pool = listed(client, BROKEN)
    assert [(a["subdomain"], a["state"], a["dnsPending"]) for a in pool["allocations"]] == [("beta", "active", True)]

    later(app, 10)  # both pools' work is due
    with caplog.at_level(logging.ERROR, logger="pdm_app.dns.engine"):
        assert pdm.jobs.retry_dns() == 1
    # the other pool's work went out in the same tick
    assert len(tenant_records(fake.zone(OTHER), "acme")) == 6
    assert listed(client, OTHER)["pendingDns"] == [] and listed(client, OTHER)["dnsFailing"] is None

    # the failing pool shows it everywhere
    pool = listed(client, BROKEN)
    assert pool["dnsFailing"]["error"] == "KeyError: 'Subhost'" and pool["dnsFailing"]["since"]
    assert [(w["subdomain"], w["attempts"], w["lastError"]) for w in pool["pendingDns"]] == [
        ("beta", 2, "KeyError: 'Subhost'")]
    statuses = {p["poolDomain"]: p for p in client.get("/api/v1/pools").get_json()["pools"]}
    assert statuses[BROKEN]["dnsFailing"]["error"] == "KeyError: 'Subhost'"
    assert statuses[OTHER]["dnsFailing"] is None and statuses[POOL]["dnsFailing"] is None
    health = client.get("/healthz").get_json()["dns"]
    assert health[BROKEN]["lastError"] == "KeyError: 'Subhost'"
    assert health[OTHER]["lastError"] is None
    # one event per change and error, not one per pass
    assert [(e["subdomain"], e["detail"]) for e in events(client, BROKEN) if e["action"] == "dns-failed"] == [
        ("beta", "KeyError: 'Subhost'")]
    assert failures(BROKEN) - before == 2  # the commit's pass and the tick's
    body = client.get("/metrics").get_data(as_text=True)
    assert f'pdm_dns_pool_failing{{pool="{BROKEN}"}} 1.0' in body
    assert f'pdm_dns_pool_failing{{pool="{OTHER}"}}' not in body
    assert f'pdm_dns_pass_failures_total{{pool="{BROKEN}",reason="unexpected"}}' in body
    # logged at ERROR with the exception's type
    assert any(r.levelno == logging.ERROR and "KeyError" in r.getMessage() and BROKEN in r.getMessage()
               for r in caplog.records)

    # the fault is gone: the next pass publishes and clears the pool's failure
    mend(app, BROKEN)
    later(app, 60)
    assert pdm.jobs.retry_dns() == 1
    assert len(tenant_records(fake.zone(BROKEN), "beta")) == 6
    pool = listed(client, BROKEN)
    assert pool["dnsFailing"] is None and pool["pendingDns"] == []
    assert client.get("/healthz").get_json()["dns"][BROKEN]["lastError"] is None
    assert "pdm_dns_pool_failing{" not in client.get("/metrics").get_data(as_text=True)


def test_a_failing_pass_with_no_work_shows_on_healthz_and_once_in_the_history(make_app, fake):
    app = make_app()
    client = app.test_client()
    pdm = app.extensions["pdm"]
    assert pdm.jobs.retry_dns() == 3
    break_pool(app, POOL, ValueError("invalid literal for int() with base 10: '³'"))

    later(app, 601)  # every pool's resync is due; nothing else is
    assert pdm.jobs.retry_dns() == 2
    health = client.get("/healthz").get_json()["dns"][POOL]
    assert health["pendingChanges"] == 0
    assert health["lastError"] == "ValueError: invalid literal for int() with base 10: '³'"
    assert listed(client, POOL)["dnsFailing"]["error"] == health["lastError"]
    later(app, 1300)  # the failed read is owed again, and every resync
    assert pdm.jobs.retry_dns() == 2
    failed = [e for e in events(client, POOL) if e["action"] == "dns-failed"]
    assert [(e["subdomain"], e["detail"]) for e in failed] == [("", health["lastError"])]

    mend(app, POOL)
    later(app, 1400)  # the read owed a minute after the last failure
    assert pdm.jobs.retry_dns() == 1
    assert client.get("/healthz").get_json()["dns"][POOL]["lastError"] is None
    assert listed(client, POOL)["dnsFailing"] is None


def test_a_drift_read_that_raises_is_a_502_naming_the_pool(make_app, fake):
    app = make_app()
    client = app.test_client()
    break_pool(app, POOL, KeyError("MainDomains"))
    answer = client.get(f"/api/v1/pool/{POOL}/drift")
    assert answer.status_code == 502
    body = answer.get_json()
    assert body["error"] == "dns-read-failed"
    assert body["detail"] == f"the DNS of {POOL} could not be read: KeyError: 'MainDomains'"
    assert "Traceback" not in answer.get_data(as_text=True)


def test_a_bug_in_the_bookkeeping_after_the_write_fails_the_pool_not_the_request(make_app, fake, monkeypatch):
    app = make_app()
    client = app.test_client()
    pdm = app.extensions["pdm"]
    assert pdm.jobs.retry_dns() == 3

    def broken(*args, **kwargs):
        raise ValueError("bookkeeping bug")

    monkeypatch.setattr(bookkeeping, "record_events", broken)
    answer = commit(client, POOL, "acme")
    assert answer.status_code == 202, answer.get_json()
    pool = listed(client, POOL)
    assert pool["dnsFailing"]["error"] == "ValueError: bookkeeping bug"
    assert [(w["subdomain"], w["attempts"]) for w in pool["pendingDns"]] == [("acme", 1)]
    monkeypatch.undo()
    later(app, 10)
    assert pdm.jobs.retry_dns() == 1
    pool = listed(client, POOL)
    assert pool["dnsFailing"] is None and pool["pendingDns"] == []
    assert "dns-published" in [e["action"] for e in events(client, POOL)]


def test_the_reason_a_pool_fails_is_redacted_everywhere_it_shows(make_app, fake, caplog, capsys):
    app = make_app()
    client = app.test_client()
    assert app.extensions["pdm"].jobs.retry_dns() == 3
    break_pool(app, POOL, ValueError(f"no JSON in the answer of https://api.dynadot.com/api3.json?key={API_KEY}"))
    with caplog.at_level(logging.INFO):
        assert commit(client, POOL, "acme").status_code == 202
    shown = [
        listed(client, POOL)["dnsFailing"]["error"],
        client.get("/healthz").get_json()["dns"][POOL]["lastError"],
        next(e["detail"] for e in events(client, POOL) if e["action"] == "dns-failed"),
        client.get(f"/api/v1/pool/{POOL}/drift").get_json()["detail"],
    ]
    for text in shown:
        assert "key=***" in text and API_KEY not in text, text
    assert API_KEY not in client.get("/metrics").get_data(as_text=True)
    # the log lines as the service writes them (JSON, traceback included) and their messages
    printed = capsys.readouterr()
    assert "no JSON in the answer" in printed.out and "Traceback" in printed.out
    assert API_KEY not in printed.out + printed.err
    assert all(API_KEY not in record.getMessage() for record in caplog.records)
