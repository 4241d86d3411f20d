"""``pool-domain-manager``: the operators' command line, run inside the pod
(``kubectl exec -it deploy/pool-domain-manager -- pool-domain-manager release omani.works acme``).

It is configured from the service's environment variables and works on the use cases
(``pdm_app.services``) and the database directly, never through HTTP. Answers go to
stdout (a table for people, ``--json`` for scripts); log lines and errors go to stderr.

Exit codes: 0 success (and a clean zone), 1 a failure (``error: <code>: <detail>``) or
drift, 2 a usage or configuration error.

- ``base``: the click group, loading the app, errors, output (tables, JSON).
- ``allocations``: list, check, history, release, renew, sweep.
- ``pools``: the pools' DNS -- pools, dns pending, dns retry, drift, reconcile.
- ``database``: db upgrade (Alembic).
- ``webhooks``: the endpoints' deliveries, the messages, replay, enable.

It may import anything of ``pdm_app`` but ``testing``; nothing of the service imports it.
"""
from __future__ import annotations

from flask.cli import ScriptInfo

# Each module registers its commands on ``cli`` as it is imported.
from . import allocations, database, pools, webhooks  # noqa: F401
from .base import PROG, app_from_environment, cli


def main(argv: list[str] | None = None) -> None:
    """The console script ``pool-domain-manager``."""
    cli.main(args=argv, prog_name=PROG,
             obj=ScriptInfo(create_app=app_from_environment, set_debug_flag=False))
