"""Where webhooks go and how hard to try: PDM_WEBHOOKS (or PDM_WEBHOOKS_FILE), a JSON list
of ``{"url", "secret", "events"?, "name"?}``, and the delivery settings beside it."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import urlsplit

from .events import EVENT_TYPES

# The Standard Webhooks specification's schedule after the first attempt: 5 s, 5 min,
# 30 min, 2 h, 5 h, 10 h, 10 h (about 28 hours in all), then the message is given up.
DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
MAX_ENDPOINTS = 20
MAX_SECRETS = 5


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    # Every current secret signs (several while one is rotated in); repr hides them.
    secrets: tuple[str, ...] = field(repr=False)
    # The event types it wants; None: all of them.
    events: frozenset[str] | None = None

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


@dataclass(frozen=True)
class WebhookSettings:
    endpoints: tuple[Endpoint, ...] = ()
    retry_schedule: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    timeout: float = 10.0
    interval: float = 1.0
    retention: float = 7 * 86400.0
    # The base of a payload's link (PDM_PUBLIC_URL); empty: links are paths.
    public_url: str = ""

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)


def load_webhooks(env: Mapping[str, str], duration: Callable[[Mapping[str, str], str, float], float],
                  parse_duration: Callable[[str], float]) -> WebhookSettings:
    """The webhook settings of ``env``; ValueError says what is wrong (never a secret).
    ``duration``/``parse_duration``: the configuration's own readers of durations."""
    raw = env.get("PDM_WEBHOOKS", "").strip()
    path = env.get("PDM_WEBHOOKS_FILE", "").strip()
    if raw and path:
        raise ValueError("set PDM_WEBHOOKS or PDM_WEBHOOKS_FILE, not both")
    source = "PDM_WEBHOOKS"
    if path:
        source = "PDM_WEBHOOKS_FILE"
        try:
            with open(path, encoding="utf-8") as f:
                raw = f.read().strip()
        except (OSError, UnicodeError) as err:
            raise ValueError(f"PDM_WEBHOOKS_FILE={path!r} cannot be read ({getattr(err, 'strerror', None) or err})") \
                from None
    endpoints = parse_endpoints(raw, source) if raw else ()
    text = env.get("PDM_WEBHOOK_RETRY_SCHEDULE", "").strip() or DEFAULT_RETRY_SCHEDULE
    try:
        schedule = tuple(parse_duration(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"PDM_WEBHOOK_RETRY_SCHEDULE={text!r} must list durations, e.g. {DEFAULT_RETRY_SCHEDULE}") \
            from None
    if not schedule or any(d <= 0 for d in schedule) or len(schedule) > 20:
        raise ValueError(f"PDM_WEBHOOK_RETRY_SCHEDULE={text!r} must list 1 to 20 positive durations")
    public = env.get("PDM_PUBLIC_URL", "").strip().rstrip("/")
    if public and (urlsplit(public).scheme not in ("http", "https") or not urlsplit(public).netloc):
        raise ValueError(f"PDM_PUBLIC_URL={public!r} must be an http(s) URL, e.g. https://pdm.example.org")
    return WebhookSettings(
        endpoints=endpoints,
        retry_schedule=schedule,
        timeout=duration(env, "PDM_WEBHOOK_TIMEOUT", 10.0),
        interval=duration(env, "PDM_WEBHOOK_INTERVAL", 1.0),
        retention=duration(env, "PDM_WEBHOOK_RETENTION", 7 * 86400.0),
        public_url=public,
    )


def parse_endpoints(raw: str, source: str = "PDM_WEBHOOKS") -> tuple[Endpoint, ...]:
    try:
        items = json.loads(raw)
    except ValueError:
        raise ValueError(f"{source} must be a JSON list of {{\"url\", \"secret\", \"events\"?}}") from None
    if not isinstance(items, list) or len(items) > MAX_ENDPOINTS:
        raise ValueError(f"{source} must be a JSON list of at most {MAX_ENDPOINTS} endpoints")
    endpoints = [_endpoint(item, f"{source}[{i}]") for i, item in enumerate(items)]
    names = [e.name for e in endpoints]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{source}: endpoint names must differ ({', '.join(repeated)} repeated; set \"name\")")
    return tuple(endpoints)


def _endpoint(item: object, where: str) -> Endpoint:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object with url and secret")
    unknown = sorted(set(item) - {"url", "secret", "events", "name"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (url, secret, events, name)")
    url = item.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise ValueError(f"{where}.url must be an http:// or https:// URL")
    secrets = item.get("secret")
    secrets = [secrets] if isinstance(secrets, str) else secrets
    if not isinstance(secrets, list) or not 1 <= len(secrets) <= MAX_SECRETS:
        raise ValueError(f"{where}.secret must be a whsec_ secret or a list of 1 to {MAX_SECRETS} of them")
    for n, secret in enumerate(secrets):
        if not isinstance(secret, str) or not secret.startswith("whsec_") or not _signs(secret):
            # Which one, never what it holds.
            raise ValueError(f"{where}.secret[{n}] must be whsec_ followed by base64 (24 to 64 bytes)")
    events = item.get("events")
    if events is not None:
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise ValueError(f"{where}.events must be a non-empty list of event types")
        unknown_types = sorted(set(events) - set(EVENT_TYPES))
        if unknown_types:
            raise ValueError(f"{where}.events: unknown type(s) {', '.join(map(repr, unknown_types))}; "
                             f"known: {', '.join(EVENT_TYPES)}")
    name = item.get("name")
    if name is None:
        port = f":{parts.port}" if parts.port else ""
        name = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise ValueError(f"{where}.name must be a short printable name")
    return Endpoint(name.strip(), url, tuple(secrets), frozenset(events) if events is not None else None)


def _signs(secret: str) -> bool:
    """Whether ``secret`` is base64 of a key of a sensible size (the library would take
    almost anything, and sign with it)."""
    text = secret[len("whsec_"):]
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return False
    return 24 <= len(key) <= 64
