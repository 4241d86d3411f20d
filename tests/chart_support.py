"""The Helm chart rendered by real Helm (helm_python binds Helm's own Go library) and its
server container's environment as the kubelet builds it: for tests/e2e/test_deploy.py
(the chart itself) and tests/integration/test_real_callers.py (the callers against the
service as the chart deploys it)."""
from __future__ import annotations

import atexit
import base64
import shutil
import tempfile
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

    def secrets(self) -> dict[str, dict[str, str]]:
        """The Secrets the chart renders itself (the console's key): name -> key -> value,
        decoded. Once installed they exist in the namespace like any other."""
        out: dict[str, dict[str, str]] = {}
        for secret in self.all("Secret"):
            values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            values.update(secret.get("stringData") or {})
            out[secret["metadata"]["name"]] = values
        return out

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
    start the container (CreateContainerConfigError); or a non-optional secret volume
    lacks a key (or the secret) it projects: the pod never starts (ContainerCreating)."""


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    """A directory of this test process's own, removed when it exits."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="pdm-pod-files-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_SCRATCH[0]))


def pod_files(rendered: Rendered, secrets: dict[str, dict[str, str]], root: Path) -> dict[str, Path]:
    """The secret volumes the server container mounts, written under ``root`` the way the
    kubelet projects them (the ``items`` listed, else every key): mount path -> the local
    directory standing in for it. A key (or secret) a non-optional volume needs and
    ``secrets`` lacks raises MissingSecretKey."""
    volumes = {v["name"]: v["secret"] for v in rendered.pod.get("volumes", []) if "secret" in v}
    mounts: dict[str, Path] = {}
    for mount in rendered.container.get("volumeMounts", []):
        source = volumes.get(mount["name"])
        if source is None:
            continue  # an emptyDir: nothing to read
        data = secrets.get(source["secretName"])
        if data is None and not source.get("optional", False):
            raise MissingSecretKey(f"volume {mount['name']}: no secret {source['secretName']!r}")
        items = source.get("items") or [{"key": k, "path": k} for k in (data or {})]
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        for item in items:
            value = (data or {}).get(item["key"])
            if value is None:
                if source.get("optional", False):
                    continue
                raise MissingSecretKey(f"volume {mount['name']}: secret {source['secretName']!r} "
                                       f"has no key {item['key']!r}")
            (local / item["path"]).write_text(value)
        mounts[mount["mountPath"].rstrip("/")] = local
    return mounts


def pod_environment(rendered: Rendered, secrets: dict[str, dict[str, str]],
                    files: Path | None = None) -> dict[str, str]:
    """The server container's environment as Kubernetes gives it to the process: the
    ConfigMap's entries (envFrom), then the explicit entries in order, each secretKeyRef
    resolved from ``secrets`` (name -> key -> value) and the Secrets the chart renders
    itself. A missing key of an ``optional`` reference leaves the variable unset; of any
    other, raises MissingSecretKey. The mounted secret files are written under ``files``
    (default: a scratch directory of this process) by pod_files, and a variable naming a
    path inside a mount (PDM_API_TOKENS_FILE, PDM_SECRET_KEY_FILE) names the local copy."""
    secrets = {**rendered.secrets(), **secrets}
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
    mounts = pod_files(rendered, secrets, files or _scratch())
    for name, value in env.items():
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                env[name] = str(local) + value[len(mount_path):]
                break
    return env
