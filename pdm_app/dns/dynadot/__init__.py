"""Dynadot as a pool's DNS host: ``client`` (its legacy ``api3.json``), ``plan`` (pure: the
whole zone to write back) and ``backend`` (the pass's ``ZoneBackend``); ``build_backend``
wires them from the settings for the composition root. Imports from ``pdm_app.dns`` below
it and from the infrastructure modules (``config``, ``locks``, ``outbound``), nothing above."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ...config import Settings
    from .backend import DynadotZones, Registrar


def build_backend(settings: Settings, engine: Engine, registrar: Registrar | None = None) -> DynadotZones:
    """The backend of every pool on Dynadot (``registrar``: a client to use instead of the
    real one). Imported on use: a deployment without Dynadot pools never loads it."""
    from ...locks import DatabaseLock
    from .backend import DynadotZones
    from .client import DynadotClient

    if registrar is None:
        registrar = DynadotClient(
            settings.dynadot_api_url,
            settings.dynadot_api_key,
            min_interval=settings.dynadot_min_interval,
            max_apex_records=settings.max_apex_records,
            max_subhost_records=settings.max_subhost_records,
        )
    return DynadotZones(
        registrar,
        # One lock per registrar account: one call in flight per key, and no two
        # writes of one zone interleaved.
        DatabaseLock(engine, "pdm-registrar"),
        key=settings.dynadot_api_key or "",
        record_names=settings.tenant_records,
        min_interval=settings.dynadot_min_interval,
        max_subhost_records=settings.max_subhost_records,
        max_apex_records=settings.max_apex_records,
        pools=settings.managed_domains,
    )
