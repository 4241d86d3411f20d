"""The operators' command line (``pool-domain-manager``) before it touches a database:
help for every command, and a configuration error as one line with exit code 2."""
from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from pdm_app.cli import cli

PROG = "pool-domain-manager"

COMMANDS = [[], ["pools"], ["list"], ["check"], ["history"], ["release"], ["renew"], ["sweep"], ["dns"],
            ["dns", "pending"], ["dns", "retry"], ["drift"], ["reconcile"], ["db"], ["db", "upgrade"], ["webhooks"],
            ["webhooks", "messages"], ["webhooks", "replay"], ["webhooks", "enable"]]


@pytest.fixture(autouse=True)
def _root_logger_kept():
    """Commands swap the log handler (and ``db upgrade`` runs Alembic's fileConfig): the
    root logger is put back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# -- help, usage, configuration ---------------------------------------------------------


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "(top)")
def test_help_for_every_command(path):
    # --help needs no configuration: no app is built
    result = CliRunner().invoke(cli, path + ["--help"], prog_name=PROG, env={"DYNADOT_API_KEY": None})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: {' '.join([PROG] + path)}")
    if path and path[0] not in ("dns", "db") or len(path) == 2:
        assert "--json" in result.stdout


def test_configuration_error_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["pools"], prog_name=PROG, env={
        "DYNADOT_API_KEY": None, "PDM_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3", "PDM_AUTH": "disabled"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"{PROG}: configuration error: DYNADOT_API_KEY is required")
    assert len(result.stderr.strip().splitlines()) == 1
