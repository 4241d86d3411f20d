"""Alembic owns the schema: the migrations run on both backends and agree with the models."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select

from conftest import alembic_config, reset_schema
from pdm_app.models import Base, PoolAllocation


def test_models_and_migrations_agree(db_url):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_and_upgrade_again(db_url):
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "base")
    engine = create_engine(db_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    reset_schema(db_url)
    engine = create_engine(db_url)
    assert {"pool_allocations", "dns_work", "pool_zones", "registrar_accounts"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_refuses_to_drop_allocations(db_url):
    """Below 0001 the allocations table goes, and with it every name in it: only an
    empty one (as in the test above) is dropped."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    table = PoolAllocation.__table__
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(table.insert().values(
            pool_domain="omani.works", subdomain="acme", state="active", reserved_at=now, expires_at=None,
            reservation_token="0" * 64, sovereign_fqdn=None, load_balancer_ip="198.51.100.7",
            created_by="catalyst-api", updated_at=now))
    cfg = alembic_config(db_url)
    with pytest.raises(RuntimeError, match=r"refusing to downgrade below 0001: pool_allocations holds 1 "):
        command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar() == 1
    # SQLite's DDL is not transactional: the steps above 0001 were undone there (on
    # PostgreSQL nothing was); upgrading puts the shared database back at head.
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    engine.dispose()


def test_schema_revision_constant_is_the_alembic_head():
    from alembic.script import ScriptDirectory

    from conftest import alembic_config
    from pdm_app.models import SCHEMA_REVISION

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head == SCHEMA_REVISION
