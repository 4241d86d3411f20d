"""The chart's monitoring: the PrometheusRule (files/alerts.yaml, rendered by
templates/prometheusrule.yaml) and the Grafana dashboard ConfigMap (files/dashboard.json),
rendered by real Helm like the rest of the chart (tests/e2e/test_deploy.py). What the
alerts do is proven by promtool and a real Prometheus in tests/e2e/test_alerts.py.
"""
from __future__ import annotations

import json
import re

import helm_python as helm
import pytest
import yaml

from chart_support import CHART, NAMESPACE, ROOT, Rendered, render_raw
from e2e.test_deploy import assert_yamllint_clean

RUNBOOKS = ROOT / "docs" / "runbooks"
ON = {"monitoring": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}}
# What a runbook says, each under a heading of its own.
RUNBOOK_SECTIONS = ("## What it means", "## How to confirm", "## How to repair", "## When to escalate")


def with_monitoring(**rule) -> Rendered:
    return Rendered({"monitoring": {"prometheusRule": {"enabled": True, **rule}}})


def rules(rendered: Rendered) -> list[dict]:
    (group,) = rendered.one("PrometheusRule")["spec"]["groups"]
    return group["rules"]


def alert_names(rendered: Rendered) -> list[str]:
    return [r["alert"] for r in rules(rendered)]


@pytest.fixture(scope="module")
def on() -> Rendered:
    return Rendered(ON)


def test_off_by_default():
    default = Rendered()
    assert default.all("PrometheusRule") == []
    assert not any(cm["metadata"]["name"].endswith("-dashboard") for cm in default.all("ConfigMap"))


def test_on_renders_a_prometheus_rule_and_the_dashboard(on):
    rule = on.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert on.one("ConfigMap", "pool-domain-manager-dashboard")
    # The alerts the issue names, at least.
    assert {"PdmDown", "PdmNotReady", "PdmNoJobLeader", "PdmSeveralJobLeaders", "PdmPoolBlocked", "PdmPoolFailing",
            "PdmDnsWorkStale", "PdmResyncOverdue", "PdmRegistrarThrottled", "PdmZoneNearlyFull",
            "PdmDatabaseUnreachable", "PdmDsMissing", "PdmDsMismatch", "PdmRateLimited",
            "PdmWebhookDeliveriesFailing", "PdmWebhookGaveUp", "PdmWebhookBacklog",
            "PdmWebhookEndpointDisabled"} <= set(alert_names(on))


def test_every_rule_has_a_severity_a_summary_a_description_and_its_runbook(on):
    for rule in rules(on):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == (
            f"https://github.com/openova-io/pool-domain-manager/blob/main/docs/runbooks/{name}.md")
        # The runbook is there, and says what a person on call needs.
        runbook = (RUNBOOKS / f"{name}.md").read_text()
        assert runbook.startswith(f"# {name}\n"), name
        for section in RUNBOOK_SECTIONS:
            assert section in runbook, (name, section)


def test_descriptions_name_what_the_alert_is_about(on):
    # The pool, DNS host, scope or endpoint a rule groups by is in its description.
    for rule in rules(on):
        grouped = re.search(r"by \(([^)]*)\)", rule["expr"])
        subjects = {label.strip() for label in grouped.group(1).split(",")} - {"job"} if grouped else set()
        for label in subjects:
            assert f"$labels.{label}" in rule["annotations"]["description"], (rule["alert"], label)


def test_every_runbook_belongs_to_an_alert(on):
    names = set(alert_names(on))
    assert {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"} == names
    index = (RUNBOOKS / "README.md").read_text()
    for name in names:
        assert f"({name}.md)" in index, name


def test_runbooks_name_only_commands_that_exist():
    import click

    from pdm_app.cli import cli

    named = 0
    for path in RUNBOOKS.glob("*.md"):
        for first, second in re.findall(r"`pool-domain-manager ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", path.read_text()):
            command = cli.commands.get(first)
            assert command is not None, (path.name, first)
            if isinstance(command, click.Group) and second:
                assert second in command.commands, (path.name, first, second)
            named += 1
    assert named >= 10  # the runbooks do say what to run


def test_exclude_rules_leaves_those_out():
    kept = alert_names(with_monitoring(excludeRules=["PdmDsMissing", "PdmWebhookGaveUp"]))
    assert "PdmDsMissing" not in kept and "PdmWebhookGaveUp" not in kept and "PdmPoolBlocked" in kept
    with pytest.raises(helm.HelmError, match="PdmNoSuchAlert"):
        render_raw({"monitoring": {"prometheusRule": {"enabled": True, "excludeRules": ["PdmNoSuchAlert"]}}})


def test_additional_labels_and_the_runbook_base():
    rendered = Rendered({"monitoring": {"runbookBaseUrl": "https://runbooks.example/pdm/",
                                        "prometheusRule": {"enabled": True,
                                                           "additionalLabels": {"release": "kube-prometheus-stack"}}}})
    labels = rendered.one("PrometheusRule")["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack" and labels["app.kubernetes.io/name"] == "pool-domain-manager"
    for rule in rules(rendered):
        assert rule["annotations"]["runbook_url"] == f"https://runbooks.example/pdm/{rule['alert']}.md"


def test_thresholds_and_the_job_come_from_values():
    rendered = with_monitoring(job="pdm-east", alerts={
        "PdmDnsWorkStale": {"for": "1m", "seconds": 42, "severity": "critical"},
        "PdmResyncOverdue": {"intervals": 5}})
    by_name = {r["alert"]: r for r in rules(rendered)}
    stale = by_name["PdmDnsWorkStale"]
    assert stale["expr"].endswith("> 42") and stale["for"] == "1m" and stale["labels"]["severity"] == "critical"
    assert "(5 * max by (job)" in by_name["PdmResyncOverdue"]["expr"]
    # Values not given keep their defaults (Helm merges maps).
    assert by_name["PdmPoolBlocked"]["for"] == "5m"
    for rule in by_name.values():
        assert 'job="pdm-east"' in rule["expr"] and 'job="pool-domain-manager"' not in rule["expr"], rule["alert"]


def test_every_pdm_metric_the_rules_and_the_dashboard_read_is_one_the_service_exports(on):
    exported = set(re.findall(r'"(pdm_[a-z_]+)"', (ROOT / "pdm_app" / "metrics.py").read_text()))
    dashboard = json.loads(on.one("ConfigMap", "pool-domain-manager-dashboard")["data"]["pool-domain-manager.json"])
    exprs = [r["expr"] for r in rules(on)] + [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\bpdm_[a-z_]+", e)}
    # Counters are declared without _total (prometheus_client adds it).
    exported |= {f"{name}_total" for name in exported}
    assert used and used <= exported, used - exported


def test_the_dashboard_is_a_configmap_for_the_sidecar(on):
    cm = on.one("ConfigMap", "pool-domain-manager-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = cm["data"]
    dashboard = json.loads(cm["data"][key])
    assert dashboard["uid"] == "pool-domain-manager"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "job", "pool"]
    text = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    # Requests and latency by route; allocations by pool and state; DNS passes and pending
    # work; registrar calls and errors by provider; lock and leader; rate-limit hits; webhooks.
    for needed in ("sum by (endpoint, status) (rate(pdm_http_requests_total",
                   "pdm_http_request_duration_seconds_bucket", "sum by (pool, state) (pdm_allocations",
                   "pdm_dns_lock_held_seconds_count", "pdm_dns_pass_failures_total", "pdm_dns_work_pending",
                   "sum by (provider, outcome) (rate(pdm_registrar_calls_total", 'outcome!="ok"',
                   "pdm_job_leader", "pdm_rate_limited_total", "pdm_webhook_deliveries_total",
                   "pdm_webhook_pending"):
        assert needed in text, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_label_namespace_and_annotations_are_configurable():
    rendered = Rendered({"monitoring": {"grafanaDashboard": {
        "enabled": True, "labels": {"grafana_dashboard": None, "dashboards": "pdm"}, "namespace": "monitoring",
        "annotations": {"grafana_folder": "Platform"}}}})
    cm = rendered.one("ConfigMap", "pool-domain-manager-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["dashboards"] == "pdm" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}


def test_the_monitoring_render_lints_clean(on):
    assert_yamllint_clean(on)
    report = helm.lint(CHART, ON, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_rules_are_valid_prometheus_rule_groups(on):
    # What `promtool check rules` reads (tests/e2e/test_alerts.py runs it): groups of rules.
    spec = on.one("PrometheusRule")["spec"]
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec
    for rule in rules(on):
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
