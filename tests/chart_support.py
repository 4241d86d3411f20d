"""The Helm chart rendered by real Helm (helm_python binds Helm's own Go library) and its
server container's environment as the kubelet builds it: for tests/e2e/test_deploy.py
(the chart itself) and tests/integration/test_real_callers.py (the callers against the
service as the chart deploys it)."""
from __future__ import annotations

from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "pool-domain-manager"
RELEASE, NAMESPACE = "pool-domain-manager", "openova-system"


def render_raw(values: dict | None = None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


class Rendered:
    """The parsed objects of one render, looked up by kind (and name)."""

    def __init__(self, values: dict | None = None):
        self.manifests = render_raw(values)
        self.objects = [
            doc
            for path, text in sorted(self.manifests.items())
            if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def all(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} objects named {name!r}: {self.kinds()}"
        return found[0]

    def stream(self) -> str:
        """The manifests as one YAML stream, the way ``helm template`` prints them."""
        return "".join(
            f"---\n# Source: {path}\n{text.strip()}\n"
            for path, text in sorted(self.manifests.items())
            if not path.endswith("NOTES.txt") and text.strip()
        )

    # The server pod and its container.
    @property
    def deployment(self) -> dict:
        return self.one("Deployment")

    @property
    def pod(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict:
        (container,) = self.pod["containers"]
        return container

    def env(self) -> dict[str, dict]:
        """The server's effective environment: name -> {"value"} or {"valueFrom"}; the
        ConfigMap's entries included (envFrom), explicit entries winning."""
        out: dict[str, dict] = {}
        for source in self.container.get("envFrom", []):
            cm = self.one("ConfigMap", source["configMapRef"]["name"])
            out.update({k: {"value": v} for k, v in cm["data"].items()})
        out.update({e["name"]: e for e in self.container["env"]})
        return out


class MissingSecretKey(Exception):
    """A non-optional secretKeyRef names a key the secret lacks: the kubelet refuses to
    start the container (CreateContainerConfigError)."""


def pod_environment(rendered: Rendered, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The server container's environment as Kubernetes gives it to the process: the
    ConfigMap's entries (envFrom), then the explicit entries in order, each secretKeyRef
    resolved from ``secrets`` (name -> key -> value). A missing key of an ``optional``
    reference leaves the variable unset; of any other, raises MissingSecretKey."""
    env: dict[str, str] = {}
    for source in rendered.container.get("envFrom", []):
        env.update(rendered.one("ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in rendered.container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            if not ref.get("optional", False):
                raise MissingSecretKey(f"{entry['name']}: secret {ref['name']!r} has no key {ref['key']!r}")
            env.pop(entry["name"], None)  # an optional reference that misses sets nothing
            continue
        env[entry["name"]] = value
    return env
