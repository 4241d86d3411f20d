"""Settings read from the environment, with the old service's names and defaults.

A bad value raises ``ConfigError`` naming the variable; ``wsgi.py`` turns that into one
line on stderr and a non-zero exit instead of a traceback.

Long on purpose: every environment variable the service reads, its default and its
check are here and nowhere else, so the chart, the README and this file can be held
side by side.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from .auth import AUTH_DISABLED, AUTH_MODES, AUTH_OPERATORS, AUTH_TOKENS, ApiToken, check_unique, parse_tokens
from .webhooks.endpoints import WebhookSettings, load_webhooks

DEFAULT_POOLS = ("omani.works", "openova.io")
DEFAULT_DYNADOT_URL = "https://api.dynadot.com/api3.json"
DEFAULT_TENANT_RECORDS = "*,console,gitea,harbor,admin,api"
DEFAULT_NAMESERVERS = ("ns1.openova.io", "ns2.openova.io", "ns3.openova.io")
# Where a pool's DNS lives (PDM_POOL_DNS).
DNS_BACKENDS = ("dynadot", "powerdns")
# Per-caller rate limits (PDM_RATE_LIMITS), per scope, in Flask-Limiter's notation: a
# safety net against a runaway loop, far above what the callers need.
RATE_LIMIT_SCOPES = ("check", "write", "registrar", "operator", "sign-in")
# sign-in: the console's token sign-in, per client address (a wrong token is retried slowly).
DEFAULT_RATE_LIMITS = (
    "check=200/second; write=50/second,5000/hour; registrar=30/minute; operator=50/second; sign-in=10/minute"
)
DEFAULT_MAX_OPEN_RESERVATIONS = 500
# Local runs without PDM_DATABASE_URL get an embedded SQLite file.
DEFAULT_LOCAL_DATABASE = "sqlite:///pdm-local.sqlite3"


def dns_backend_of(pool: str, pool_dns: Mapping[str, str], pdns_base_url: str | None) -> str:
    """Where ``pool``'s DNS lives: PDM_POOL_DNS's choice, else PowerDNS when its base URL
    is set (the previous service's rule), else Dynadot."""
    return pool_dns.get(pool) or ("powerdns" if pdns_base_url else "dynadot")


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host`` or ``IPv4:port`` (an IPv6 address has more than one colon: no port)."""
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    return host, int(port) if port else None


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
                 "d": 86400.0}


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` syntax ("10m", "90s", "1h30m", "500ms", "0") in seconds,
    plus ``d`` for days (86400 s; Go has no such unit), so a retention reads "400d"."""
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_domain_list(text: str) -> list[str]:
    """Comma- and/or whitespace-separated names, lower-cased, de-duplicated, in order."""
    seen: dict[str, None] = {}
    for item in re.split(r"[,\s]+", text):
        item = item.strip().lower().rstrip(".")
        if item:
            seen.setdefault(item, None)
    return list(seen)


def normalise_database_url(url: str) -> str:
    """Accept libpq-style ``postgres://``/``postgresql://`` URLs and drive them through
    psycopg 3 (a bare ``postgresql://`` would make SQLAlchemy pick psycopg2)."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


_LABEL = re.compile(r"^(\*|@|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$")


def database_url(env: Mapping[str, str] | None = None) -> str:
    """PDM_DATABASE_URL, normalised; shared by the app and ``alembic/env.py``."""
    env = os.environ if env is None else env
    url = normalise_database_url(env.get("PDM_DATABASE_URL", "").strip() or DEFAULT_LOCAL_DATABASE)
    if not re.match(r"^(postgresql\+psycopg|sqlite(\+pysqlite)?)://", url):
        raise ConfigError("PDM_DATABASE_URL must be a postgres://, postgresql:// or sqlite:/// URL")
    return url


def parse_tenant_records(text: str) -> tuple[str, ...]:
    names = parse_domain_list(text)
    if not names or any(not _LABEL.match(n) for n in names):
        raise ValueError(f"invalid record list {text!r}")
    return tuple(names)


def parse_ip_ranges(text: str) -> tuple[ipaddress.IPv4Network, ...]:
    """IPv4 CIDR ranges, comma- and/or whitespace-separated ("10.0.0.0/8 192.168.0.0/16").
    A range that is all loopback, link-local, multicast, reserved or unspecified is
    refused: those addresses are never published, whatever the setting says."""
    ranges = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            network = ipaddress.IPv4Network(item)
        except ValueError as err:
            raise ValueError(f"{item!r} is not an IPv4 range like 10.0.0.0/8 ({err})") from None
        if (network.is_loopback or network.is_link_local or network.is_multicast or network.is_reserved
                or network.is_unspecified):
            raise ValueError(f"{item} is loopback, link-local, multicast, reserved or unspecified: "
                             "such addresses are never published")
        ranges.append(network)
    return tuple(ranges)


def _rate_limit_items(text: str) -> list[tuple[str, str]]:
    """``scope=limits`` items separated by ``;``, each checked; ``limits`` may be ``off``."""
    from limits import parse_many

    items = []
    for item in (i.strip() for i in text.split(";")):
        if not item:
            continue
        scope, sep, value = (part.strip() for part in item.partition("="))
        if not sep or scope not in RATE_LIMIT_SCOPES:
            raise ValueError(f"{item!r} is not SCOPE=LIMITS with SCOPE one of {', '.join(RATE_LIMIT_SCOPES)}")
        if value.lower() != "off":
            try:
                parsed = parse_many(value)
            except ValueError:
                parsed = []
            if not parsed or any(p.amount < 1 for p in parsed):
                raise ValueError(f"{scope}={value!r} is not a limit like 50/second or 50/second,5000/hour")
        items.append((scope, value))
    return items


def parse_rate_limits(text: str) -> dict[str, str]:
    """PDM_RATE_LIMITS -> scope -> limit string (Flask-Limiter's notation, e.g.
    "50/second,5000/hour"). A scope not named keeps its default; ``scope=off`` lifts its
    limits; ``off`` lifts them all (an empty mapping)."""
    if text.strip().lower() == "off":
        return {}
    limits = dict(_rate_limit_items(DEFAULT_RATE_LIMITS))
    for scope, value in _rate_limit_items(text):
        if value.lower() == "off":
            limits.pop(scope, None)
        else:
            limits[scope] = value
    return limits


def parse_proxies(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """IP addresses and CIDR ranges, IPv4 or IPv6, comma- and/or whitespace-separated."""
    proxies = []
    for item in re.split(r"[,\s]+", text.strip()):
        if item:
            try:
                proxies.append(ipaddress.ip_network(item))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or a CIDR range like 10.0.0.0/8") from None
    return tuple(proxies)


def _ip_ranges(env: Mapping[str, str], name: str) -> tuple[ipaddress.IPv4Network, ...]:
    try:
        return parse_ip_ranges(env.get(name, ""))
    except ValueError as err:
        raise ConfigError(f"{name}: {err}") from None


LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR"}


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_LOCAL_DATABASE
    managed_domains: tuple[str, ...] = DEFAULT_POOLS
    reservation_ttl: float = 600.0
    sweeper_interval: float = 30.0
    log_level: str = "INFO"
    port: int = 8080
    # gunicorn's processes and threads per process (GUNICORN_WORKERS, GUNICORN_THREADS);
    # each process's database pool is sized from its threads (db.make_engine).
    gunicorn_workers: int = 2
    gunicorn_threads: int = 8
    dynadot_api_url: str = DEFAULT_DYNADOT_URL
    dynadot_api_key: str | None = field(default=None, repr=False)
    dynadot_api_secret: str | None = field(default=None, repr=False)
    dynadot_min_interval: float = 1.0
    tenant_records: tuple[str, ...] = tuple(DEFAULT_TENANT_RECORDS.split(","))
    # Dynadot's set_dns2 carries at most 20 apex and 100 sub-host records.
    max_apex_records: int = 20
    max_subhost_records: int = 100
    # How long a commit/release waits for the registrar before answering 202.
    dns_request_budget: float = 10.0
    # How many requests of one process may wait on the registrar at once; the rest answer
    # 202 straight away, so /check always has threads left.
    dns_max_waiting_requests: int = 4
    # How often the background job retries pending DNS work.
    dns_retry_interval: float = 15.0
    # How often the job leader reads every pool's zone back and repairs the service's own
    # records (someone may have edited the zone by hand); 0 turns it off.
    dns_resync_interval: float = 600.0
    # A zone write that failed or timed out may still be applied by the registrar: the
    # zone is read again this long after it.
    dns_late_write_window: float = 180.0
    # The longest a renew may extend a reservation to; at least reservation_ttl.
    reservation_max_ttl: float = 7200.0
    # How long history events are kept; the job leader prunes older ones.
    history_retention: float = 400 * 86400.0
    # Non-public IPv4 ranges a commit's loadBalancerIP may still be in (a lab); empty:
    # public unicast addresses only (domain.validate_ipv4).
    lb_ip_allowed_ranges: tuple[ipaddress.IPv4Network, ...] = ()
    # Customers' own registrars (bring your own domain). This service's egress IPv4
    # address, which a customer allow-lists at Namecheap; OVH's API region; and the
    # providers' API base URLs (tests point them at local fakes).
    namecheap_client_ip: str | None = None
    ovh_endpoint: str = "ovh-eu"
    customer_registrar_urls: Mapping[str, str] = field(default_factory=dict)
    # PowerDNS (one signed zone per tenant, delegated from the pool's zone): with a base
    # URL, pools are on PowerDNS unless PDM_POOL_DNS names them "dynadot".
    pdns_base_url: str | None = None
    pdns_api_key: str | None = field(default=None, repr=False)
    pdns_server_id: str = "localhost"
    # The tenant zones' and the pool zones' NS (PDM_NAMESERVERS).
    nameservers: tuple[str, ...] = DEFAULT_NAMESERVERS
    # pool -> "dynadot" or "powerdns", where it differs from the default above.
    pool_dns: Mapping[str, str] = field(default_factory=dict)
    # A resolver (an IP address, or IPv4:port) asked whether a pool's DS is published by
    # its registrar; None: the system's resolver.
    ds_check_nameserver: str | None = None
    # Per-caller rate limits: scope (RATE_LIMIT_SCOPES) -> Flask-Limiter limit string;
    # empty: none. Off here (tests, tools); load_settings' default is DEFAULT_RATE_LIMITS.
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    # Proxies whose X-Forwarded-For names the client (PDM_TRUSTED_PROXIES); empty: the
    # connection's address is the client's.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Reservations not yet committed one caller may hold in one pool; 0: no limit.
    max_open_reservations: int = DEFAULT_MAX_OPEN_RESERVATIONS
    # Whether this process runs the background jobs (they elect one leader anyway).
    run_jobs: bool = True
    api_tokens: tuple[ApiToken, ...] = field(default=(), repr=False)
    # PDM_AUTH: operators, tokens or disabled (auth.AUTH_MODES; what each admits: auth.Gate).
    auth_mode: str = AUTH_TOKENS
    # The earlier switch, kept for code that builds Settings by hand: False means
    # "disabled" whatever auth_mode says. load_settings keeps the two consistent.
    auth_enabled: bool = True
    # The operators' console (/console/): the key its session cookies and forms are
    # signed with (PDM_SECRET_KEY or PDM_SECRET_KEY_FILE; None: the console is off); how
    # long a signed-in operator may stay idle; the authenticating proxies whose user
    # header signs an operator in (PDM_CONSOLE_SSO_PROXIES; empty: no single sign-on);
    # and whether its cookie is always Secure (else only over TLS).
    secret_key: str | None = field(default=None, repr=False)
    console_idle_timeout: float = 1800.0
    console_sso_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    console_secure_cookie: bool = False
    # Where webhooks go, and how hard to try (PDM_WEBHOOKS, PDM_WEBHOOK_*).
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def effective_auth_mode(self) -> str:
        return AUTH_DISABLED if not self.auth_enabled else self.auth_mode

    def dns_backend(self, pool: str) -> str:
        """Where ``pool``'s DNS lives: "dynadot" or "powerdns"."""
        return dns_backend_of(pool, self.pool_dns, self.pdns_base_url)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


MAX_DURATION = 3650 * 86400.0  # the longest any duration setting may be (3650d, ~10 years)
MAX_DURATION_TEXT = "3650d (about 10 years)"


def _duration(env: Mapping[str, str], name: str, default: float, *, positive: bool = True) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse_duration(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a Go duration (like 10m, 90s, 1h30m, 500ms, 400d)") from None
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name}={raw!r} must be {'greater than' if positive else 'at least'} zero")
    if value > MAX_DURATION:
        # A date that far off overflows (every reserve would fail): no setting needs it.
        raise ConfigError(f"{name}={raw!r} is too long: at most {MAX_DURATION_TEXT}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
    return value


# Where each customer registrar's API lives, when not at the provider's own address.
CUSTOMER_REGISTRAR_URL_VARIABLES = {
    "cloudflare": "PDM_CLOUDFLARE_API_URL",
    "namecheap": "PDM_NAMECHEAP_API_URL",
    "godaddy": "PDM_GODADDY_API_URL",
    "dynadot": "PDM_DYNADOT_CUSTOMER_API_URL",
    "ovh": "PDM_OVH_API_URL",
}
OVH_REGIONS = ("ovh-eu", "ovh-ca", "ovh-us")


def _url(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if not re.match(r"^https?://[^\s/]+", raw):
        raise ConfigError(f"{name}={raw!r} must be an http(s) URL")
    return raw.rstrip("/")


def _public_ipv4(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        address = ipaddress.IPv4Address(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be an IPv4 address (this service's egress address)") from None
    return str(address)


def _ovh_endpoint(env: Mapping[str, str]) -> str:
    raw = env.get("PDM_OVH_ENDPOINT", "").strip().lower() or "ovh-eu"
    if raw not in OVH_REGIONS:
        raise ConfigError(f"PDM_OVH_ENDPOINT={raw!r} must be one of {', '.join(OVH_REGIONS)}")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    domains = parse_domain_list(env.get("DYNADOT_MANAGED_DOMAINS", ""))
    if not domains:
        domains = parse_domain_list(env.get("DYNADOT_DOMAIN", ""))
    if not domains:
        domains = list(DEFAULT_POOLS)

    level = env.get("PDM_LOG_LEVEL", "info").strip().lower() or "info"
    if level not in LOG_LEVELS:
        raise ConfigError(f"PDM_LOG_LEVEL={level!r} must be one of debug, info, warn, error")

    url = database_url(env)

    raw_records = env.get("PDM_TENANT_RECORDS", "").strip() or DEFAULT_TENANT_RECORDS
    try:
        tenant_records = parse_tenant_records(raw_records)
    except ValueError:
        raise ConfigError(
            f"PDM_TENANT_RECORDS={raw_records!r} must list DNS labels, '*' or '@', comma-separated"
        ) from None

    pdns = _powerdns(env, domains)
    api_key = env.get("DYNADOT_API_KEY", "").strip()
    on_dynadot = [d for d in domains if dns_backend_of(d, pdns["pool_dns"], pdns["pdns_base_url"]) == "dynadot"]
    if not api_key and on_dynadot:
        raise ConfigError("DYNADOT_API_KEY is required (the registrar key; tests and local runs use the fake's key) "
                          f"while pools are on Dynadot ({', '.join(on_dynadot)})")

    tokens, auth_mode = _auth(env)

    reservation_ttl = _duration(env, "PDM_RESERVATION_TTL", 600.0)
    # Unset, it is 2h -- or the TTL, where an existing deployment holds names longer.
    reservation_max_ttl = _duration(env, "PDM_RESERVATION_MAX_TTL", max(7200.0, reservation_ttl))
    # A renew could otherwise shorten a fresh reservation.
    if reservation_max_ttl < reservation_ttl:
        raise ConfigError(
            f"PDM_RESERVATION_MAX_TTL ({reservation_max_ttl:g}s) must be at least "
            f"PDM_RESERVATION_TTL ({reservation_ttl:g}s)"
        )

    return Settings(
        database_url=url,
        managed_domains=tuple(sorted(domains)),
        reservation_ttl=reservation_ttl,
        reservation_max_ttl=reservation_max_ttl,
        sweeper_interval=_duration(env, "PDM_SWEEPER_INTERVAL", 30.0),
        log_level=LOG_LEVELS[level],
        port=_int(env, "PORT", 8080, low=1, high=65535),
        gunicorn_workers=_int(env, "GUNICORN_WORKERS", 2, low=1, high=64),
        gunicorn_threads=_int(env, "GUNICORN_THREADS", 8, low=1, high=128),
        dynadot_api_url=env.get("DYNADOT_API_URL", "").strip() or DEFAULT_DYNADOT_URL,
        dynadot_api_key=api_key,
        dynadot_api_secret=env.get("DYNADOT_API_SECRET", "").strip() or None,
        dynadot_min_interval=_duration(env, "DYNADOT_MIN_INTERVAL", 1.0, positive=False),
        tenant_records=tenant_records,
        max_apex_records=_int(env, "PDM_MAX_APEX_RECORDS", 20, low=1, high=20),
        max_subhost_records=_int(env, "PDM_MAX_SUBHOST_RECORDS", 100, low=1, high=100),
        dns_request_budget=_duration(env, "PDM_DNS_REQUEST_BUDGET", 10.0),
        dns_retry_interval=_duration(env, "PDM_DNS_RETRY_INTERVAL", 15.0),
        dns_max_waiting_requests=_int(env, "PDM_DNS_MAX_WAITING_REQUESTS", 4, low=1, high=1000),
        dns_resync_interval=_duration(env, "PDM_DNS_RESYNC_INTERVAL", 600.0, positive=False),
        dns_late_write_window=_duration(env, "PDM_DNS_LATE_WRITE_WINDOW", 180.0),
        history_retention=_duration(env, "PDM_HISTORY_RETENTION", 400 * 86400.0),
        lb_ip_allowed_ranges=_ip_ranges(env, "PDM_LB_IP_ALLOWED_RANGES"),
        namecheap_client_ip=_public_ipv4(env, "PDM_NAMECHEAP_CLIENT_IP"),
        ovh_endpoint=_ovh_endpoint(env),
        customer_registrar_urls={
            name: _url(env, variable) for name, variable in CUSTOMER_REGISTRAR_URL_VARIABLES.items()
            if env.get(variable, "").strip()
        },
        **pdns,
        rate_limits=_rate_limits(env),
        trusted_proxies=_proxies(env),
        max_open_reservations=_int(env, "PDM_MAX_OPEN_RESERVATIONS", DEFAULT_MAX_OPEN_RESERVATIONS, low=0,
                                   high=10_000_000),
        run_jobs=_flag(env, "PDM_RUN_JOBS", True),
        api_tokens=tokens,
        auth_mode=auth_mode,
        auth_enabled=auth_mode != AUTH_DISABLED,
        secret_key=_secret_key(env),
        console_idle_timeout=_duration(env, "PDM_CONSOLE_IDLE_TIMEOUT", 1800.0),
        console_sso_proxies=_proxies(env, "PDM_CONSOLE_SSO_PROXIES"),
        console_secure_cookie=_flag(env, "PDM_CONSOLE_SECURE_COOKIE", False),
        webhooks=_webhooks(env),
    )


def _webhooks(env: Mapping[str, str]) -> WebhookSettings:
    try:
        return load_webhooks(env, _duration, parse_duration)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name}={raw!r} must be true or false")
    return raw in ("true", "1", "yes")


MIN_SECRET_KEY_LENGTH = 32


def _secret_key(env: Mapping[str, str]) -> str | None:
    """PDM_SECRET_KEY, or the contents of PDM_SECRET_KEY_FILE (the chart's secret); not
    both. Never echoed in an error."""
    key = env.get("PDM_SECRET_KEY", "").strip()
    path = env.get("PDM_SECRET_KEY_FILE", "").strip()
    if key and path:
        raise ConfigError("set PDM_SECRET_KEY or PDM_SECRET_KEY_FILE, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                key = f.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"PDM_SECRET_KEY_FILE={path!r} cannot be read ({getattr(err, 'strerror', err)})") from None
    if key and len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"{'PDM_SECRET_KEY_FILE' if path else 'PDM_SECRET_KEY'} must hold at least "
                          f"{MIN_SECRET_KEY_LENGTH} characters (e.g. python3 -c 'import secrets; "
                          "print(secrets.token_urlsafe(48))')")
    return key or None


def _rate_limits(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("PDM_RATE_LIMITS", "").strip() or DEFAULT_RATE_LIMITS
    try:
        return parse_rate_limits(raw)
    except ValueError as err:
        raise ConfigError(f"PDM_RATE_LIMITS: {err} (e.g. {DEFAULT_RATE_LIMITS!r}, or off)") from None


def _proxies(env: Mapping[str, str], name: str = "PDM_TRUSTED_PROXIES") -> tuple:
    try:
        return parse_proxies(env.get(name, ""))
    except ValueError as err:
        raise ConfigError(f"{name}: {err}") from None


def _powerdns(env: Mapping[str, str], pools: list[str]) -> dict:
    """The PowerDNS settings (the previous service's names) and PDM_POOL_DNS, checked
    together: a pool on PowerDNS needs its base URL and key."""
    base_url = _url(env, "PDM_PDNS_BASE_URL") if env.get("PDM_PDNS_BASE_URL", "").strip() else None
    api_key = env.get("PDM_PDNS_API_KEY", "").strip() or None
    server_id = env.get("PDM_PDNS_SERVER_ID", "").strip() or "localhost"
    if not re.match(r"^(?!\.+$)[A-Za-z0-9._-]{1,64}$", server_id):
        raise ConfigError(f"PDM_PDNS_SERVER_ID={server_id!r} must be a PowerDNS server id like localhost")
    raw_ns = env.get("PDM_NAMESERVERS", "").strip()
    nameservers = tuple(parse_domain_list(raw_ns)) if raw_ns else DEFAULT_NAMESERVERS
    if not nameservers or any(not re.match(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", n)
                              for n in nameservers):
        raise ConfigError(f"PDM_NAMESERVERS={raw_ns!r} must list host names like ns1.openova.io")
    pool_dns: dict[str, str] = {}
    raw = env.get("PDM_POOL_DNS", "").strip()
    for item in parse_domain_list(raw):
        pool, sep, backend = item.partition("=")
        if not sep or backend not in DNS_BACKENDS or pool not in pools:
            raise ConfigError(f"PDM_POOL_DNS={raw!r}: each item must be POOL=dynadot or POOL=powerdns, for a "
                              f"managed pool ({', '.join(pools)})")
        pool_dns[pool] = backend
    on_powerdns = [p for p in pools if dns_backend_of(p, pool_dns, base_url) == "powerdns"]
    if on_powerdns and base_url is None:
        raise ConfigError(f"PDM_PDNS_BASE_URL is required: PDM_POOL_DNS puts {', '.join(on_powerdns)} on PowerDNS")
    if on_powerdns and api_key is None:
        raise ConfigError("PDM_PDNS_API_KEY is required with PDM_PDNS_BASE_URL (PowerDNS's api-key)")
    ds_ns = env.get("PDM_DS_CHECK_NAMESERVER", "").strip() or None
    if ds_ns is not None:
        try:
            host, port = split_host_port(ds_ns)
            ipaddress.ip_address(host)
            if port is not None and not 1 <= port <= 65535:
                raise ValueError(port)
        except ValueError:
            raise ConfigError(f"PDM_DS_CHECK_NAMESERVER={ds_ns!r} must be a resolver's IP address, or "
                              "IPv4:port") from None
    return dict(pdns_base_url=base_url, pdns_api_key=api_key, pdns_server_id=server_id, nameservers=nameservers,
                pool_dns=pool_dns, ds_check_nameserver=ds_ns)


def _auth(env: Mapping[str, str]) -> tuple[tuple[ApiToken, ...], str]:
    """The tokens and the mode (auth.AUTH_MODES). Unset and ``enabled`` (the earlier
    spelling) mean ``tokens``."""
    raw = env.get("PDM_AUTH", "").strip().lower()
    mode = AUTH_TOKENS if raw in ("", "enabled") else raw
    if mode not in AUTH_MODES:
        raise ConfigError(f"PDM_AUTH={raw!r} must be operators, tokens or disabled (unset means tokens)")
    tokens: list[ApiToken] = []
    try:
        tokens += parse_tokens(env.get("PDM_API_TOKENS", ""), "PDM_API_TOKENS")
        path = env.get("PDM_API_TOKENS_FILE", "").strip()
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError as err:
                raise ConfigError(f"PDM_API_TOKENS_FILE={path!r} cannot be read ({err.strerror})") from None
            tokens += parse_tokens(text, "PDM_API_TOKENS_FILE")
        check_unique(tuple(tokens))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if mode == AUTH_TOKENS and not tokens:
        raise ConfigError(
            f"no API tokens for PDM_AUTH=tokens (also what unset means): set PDM_API_TOKENS or PDM_API_TOKENS_FILE "
            f"(name:role:secret), or PDM_AUTH={AUTH_OPERATORS} to admit clients without a token "
            f"(operators then use the console script in the pod), or PDM_AUTH=disabled to accept every caller"
        )
    return tuple(tokens), mode
