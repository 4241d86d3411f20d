"""Alembic owns the schema: the migrations run on both backends and agree with the models."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from conftest import alembic_config, reset_schema
from pdm_app.models import Base


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


def test_schema_revision_constant_is_the_alembic_head():
    from alembic.script import ScriptDirectory

    from conftest import alembic_config
    from pdm_app.models import SCHEMA_REVISION

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head == SCHEMA_REVISION
