"""PowerDNS as a pool's DNS host, one signed zone per tenant: ``client`` (its HTTP API),
``plan`` (pure: zones, keys, delegations), ``backend`` (the pass's ``ZoneBackend``) and
``ds_check`` (is the pool's DS published at its parent); ``build_backend`` wires them from
the settings for the composition root. Imports from ``pdm_app.dns`` below it and from the
infrastructure modules (``config``, ``locks``, ``outbound``), nothing above."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ...config import Settings
    from .backend import PowerDnsZones


def build_backend(settings: Settings, engine: Engine) -> PowerDnsZones:
    """The backend of every pool on PowerDNS. Imported on use: a deployment without
    PowerDNS pools never loads it."""
    from ...locks import DatabaseLock
    from .backend import PowerDnsZones
    from .client import PowerDnsClient

    return PowerDnsZones(
        PowerDnsClient(settings.pdns_base_url, settings.pdns_api_key, settings.pdns_server_id),
        # One writer per PowerDNS server: its SQLite backend refuses parallel writers.
        DatabaseLock(engine, "pdm-powerdns"),
        account_key=f"powerdns {settings.pdns_base_url} {settings.pdns_server_id}",
        record_names=settings.tenant_records,
        nameservers=settings.nameservers,
        pools=settings.managed_domains,
    )
