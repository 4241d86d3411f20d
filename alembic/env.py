"""Alembic environment: the database comes from PDM_DATABASE_URL (the same rules as the
service), or from a connection handed in by the tests."""
import sys
from logging.config import fileConfig

from alembic import context

from pdm_app.config import ConfigError, database_url
from pdm_app.db import make_engine
from pdm_app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"}, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    try:
        return config.attributes.get("url") or database_url()
    except ConfigError as err:
        print(f"alembic: {err}", file=sys.stderr)
        sys.exit(2)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
