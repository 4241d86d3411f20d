"""The commands on the database: db upgrade (Alembic)."""
from __future__ import annotations

import os

import click

from ..config import ConfigError
from .base import PROG, cli, emit_json, fail, first_line, json_option


@cli.group(short_help="The database schema (Alembic).")
def db() -> None:
    """The database schema (Alembic)."""


@db.command("upgrade", short_help="Migrate the database to this release (alembic upgrade head).")
@click.option("--config", "config_path", default="alembic.ini", show_default=True, type=click.Path(dir_okay=False),
              help="The Alembic configuration (the image's working directory /app has it).")
@json_option
def db_upgrade(config_path: str, as_json: bool) -> None:
    """Migrate the database named by PDM_DATABASE_URL to this release's schema
    (``alembic upgrade head``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from ..config import database_url

    try:
        database_url()  # what alembic/env.py reads: refuse a bad value the way the service does
    except ConfigError as err:
        fail(f"{PROG}: configuration error: {err}", 2)
    path = os.path.abspath(config_path)
    if not os.path.isfile(path):
        fail(f"error: no-alembic-config: {path} does not exist (run in the directory that holds alembic.ini, "
             "/app in the image, or pass --config)")
    cfg = Config(path)
    try:
        command.upgrade(cfg, "head")
        head = ScriptDirectory.from_config(cfg).get_current_head()
    except (CommandError, SQLAlchemyError) as err:
        fail(f"error: migration-failed: {first_line(err)}")
    if as_json:
        emit_json({"revision": head})
    else:
        click.echo(f"database at revision {head} (head)")
