"""pool-domain-manager: the single authority for tenant subdomains under shared pool
domains, and for their DNS records at the registrar."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from .auth import TokenBook
from .config import Settings, load_settings
from .customer_domains import build_registry
from .customer_domains.flips import NameserverService
from .db import make_engine, make_session_factory
from .dns import dynadot, powerdns
from .dns.dynadot.backend import Registrar
from .dns.engine import DnsPublisher
from .dns.powerdns.ds_check import check_ds
from .jobs import JobRunner
from .locks import per_key_lock
from .logs import configure_logging
from .services.console import ConsoleViews
from .services.lifecycle import Lifecycle
from .services.operators import Operators
from .services.webhooks import Webhooks
from .unit_of_work import UnitOfWork
from .webhooks.delivery import Deliverer
from .webhooks.events import Outbox

# Every request body of the contract is a few hundred bytes.
MAX_BODY_BYTES = 16 * 1024
# Where a pool's DNS can live (``config.DNS_BACKENDS`` names them): a new host is a new
# folder under ``pdm_app/dns`` and one line here.
DNS_HOSTS = {"dynadot": dynadot.build_backend, "powerdns": powerdns.build_backend}


@dataclass
class Pdm:
    """What the app is wired from; kept on ``app.extensions["pdm"]``."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker
    publisher: DnsPublisher
    lifecycle: Lifecycle
    operators: Operators
    nameservers: NameserverService
    console: ConsoleViews
    webhooks: Webhooks
    deliverer: Deliverer
    jobs: JobRunner = field(init=False)

    def __post_init__(self):
        self.jobs = JobRunner(self)


def dns_backends(settings: Settings, engine: Engine, registrar: Registrar | None = None) -> dict:
    """pool -> where its DNS lives (``PDM_POOL_DNS``), each host's backend built only if a
    pool needs it (``registrar``: a Dynadot client to use instead of the real one)."""
    hosts = {**DNS_HOSTS, "dynadot": functools.partial(dynadot.build_backend, registrar=registrar)}
    kinds = {pool: settings.dns_backend(pool) for pool in settings.managed_domains}
    built = {kind: hosts[kind](settings, engine) for kind in sorted(set(kinds.values()))}
    return {pool: built[kind] for pool, kind in kinds.items()}


def build(settings: Settings, registrar: Registrar | None = None) -> Pdm:
    """Wire the service. Opens no connection and starts no thread (fork-safe)."""
    engine = make_engine(settings.database_url, threads=settings.gunicorn_threads)
    # Every transaction that records history writes its webhooks with it (the outbox).
    session_factory = make_session_factory(engine, Outbox(settings.webhooks.endpoints, settings.webhooks.public_url))
    backends = dns_backends(settings, engine, registrar)
    publisher = DnsPublisher(
        session_factory,
        backends,
        # Only managed pools get a pass: any backend will do for the rest.
        next(iter(backends.values())),
        max_waiting_requests=settings.dns_max_waiting_requests,
        late_write_window=settings.dns_late_write_window,
        resync_interval=settings.dns_resync_interval,
    )
    # What both concerns share: the pools, the tenant's records, the DNS time a request waits.
    shared = dict(managed_domains=settings.managed_domains, record_names=settings.tenant_records,
                  dns_request_budget=settings.dns_request_budget)
    lifecycle = Lifecycle(
        session_factory,
        publisher,
        reservation_ttl=settings.reservation_ttl,
        max_subhost_records=settings.max_subhost_records,
        reservation_max_ttl=settings.reservation_max_ttl,
        history_retention=settings.history_retention,
        lb_ip_allowed_ranges=settings.lb_ip_allowed_ranges,
        max_open_reservations=settings.max_open_reservations,
        **shared,
    )
    operators = Operators(
        session_factory,
        publisher,
        ds_checker=functools.partial(check_ds, nameserver=settings.ds_check_nameserver),
        max_subhost_records=settings.max_subhost_records,
        webhook_endpoints=tuple(e.name for e in settings.webhooks.endpoints),
        **shared,
    )
    nameservers = NameserverService(
        build_registry(
            settings.customer_registrar_urls,
            namecheap_client_ip=settings.namecheap_client_ip,
            ovh_endpoint=settings.ovh_endpoint,
            # Dynadot serves one request at a time per key: one in flight deployment-wide.
            dynadot_key_lock=per_key_lock(engine, "pdm-dynadot-customer"),
        ),
        session_factory,
    )
    console = ConsoleViews(session_factory, publisher, **shared)
    webhooks = Webhooks(session_factory, settings.webhooks)
    # A clock with fractions of a second: a short retry schedule is due when it says.
    deliverer = Deliverer(lambda: UnitOfWork(session_factory), settings.webhooks,
                          lambda: datetime.now(timezone.utc))
    return Pdm(settings, engine, session_factory, publisher, lifecycle, operators, nameservers, console, webhooks,
               deliverer)


def create_app(settings: Settings | None = None, registrar: Registrar | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["pdm"] = build(settings, registrar)

    from . import console
    from .api import access, errors, health, openapi, pool, ratelimit, registrars, webhooks

    book = TokenBook(settings.api_tokens)
    access.install(app, book, settings.effective_auth_mode)
    app.register_blueprint(health.bp)
    app.register_blueprint(pool.bp)
    app.register_blueprint(pool.pools_bp)
    app.register_blueprint(registrars.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(openapi.bp)
    console.install(app, settings, book)
    errors.register_error_handlers(app)
    ratelimit.install(app, settings, app.extensions["pdm"].engine)
    if not settings.auth_enabled:
        logging.getLogger(__name__).warning("PDM_AUTH=disabled: every caller may do everything")
    logging.getLogger(__name__).info(
        "pool-domain-manager ready: pools %s, database %s",
        ",".join(settings.managed_domains), settings.database_url.split("://")[0],
    )
    return app
