"""What every command shares: the click group, the app loaded from the environment, its
log lines on stderr, a refusal as one line and an exit code, and the output (tables for
people, JSON for scripts)."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import sys
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterable, NoReturn

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from sqlalchemy.exc import OperationalError

from .. import logs
from ..api import schemas
from ..config import ConfigError
from ..domain import DomainError
from ..logs import CurrentStreamHandler, StdoutHandler
from ..redaction import redact
from ..services.lifecycle import Lifecycle
from ..services.operators import Blocked, Failing, Operators

log = logging.getLogger(__name__)

PROG = "pool-domain-manager"
VERBOSE = "pool_domain_manager.verbose"  # click's ctx.meta key of the -v flag


# -- the app, its logs, its errors ---------------------------------------------------


def app_from_environment():
    """The service's app, configured exactly as the service is (``load_settings()``)."""
    from .. import create_app
    from ..config import load_settings

    try:
        settings = load_settings()
        if not _verbose() and logging.getLevelName(settings.log_level) < logging.WARNING:
            settings = replace(settings, log_level="WARNING")
        # create_app logs as it wires the app: those lines go to stderr like the rest.
        with contextlib.redirect_stdout(sys.stderr):
            return create_app(settings)
    except ConfigError as err:
        click.echo(f"{PROG}: configuration error: {err}", err=True)
        raise click.exceptions.Exit(2) from None


def _verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(VERBOSE))


class _WithoutTraceback(logging.Formatter):
    """Without -v a log line on the CLI's stderr keeps its message (which names the error's
    type and its redacted text) but not the traceback: a failure reads as lines, not a
    stack."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text:
            record = logging.makeLogRecord({**vars(record), "exc_info": None, "exc_text": None})
        return self.inner.format(record)


@contextlib.contextmanager
def _logs_on_stderr():
    """While a command runs, the service's JSON log lines go to stderr: stdout carries
    only the answer; without -v only warnings and errors. The handlers are put back
    afterwards (tests run many commands and other tests in one process)."""
    root = logging.getLogger()
    swapped = []
    for i, handler in enumerate(root.handlers):
        if isinstance(handler, StdoutHandler):
            replacement = CurrentStreamHandler("stderr")
            replacement.setFormatter(handler.formatter if _verbose() else _WithoutTraceback(handler.formatter))
            replacement.setLevel(handler.level if _verbose() else max(handler.level, logging.WARNING))
            for f in handler.filters:
                replacement.addFilter(f)
            root.handlers[i] = replacement
            swapped.append((handler, replacement))
    try:
        yield
    finally:
        for handler, replacement in swapped:
            if replacement in root.handlers:
                root.handlers[root.handlers.index(replacement)] = handler


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def first_line(err: BaseException) -> str:
    text = redact(str(getattr(err, "orig", None) or err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


def service_command(f):
    """A command on the service's database and registrar: the app is loaded (from the
    environment; a test hands in its own through ``ScriptInfo``) and its context pushed,
    log lines go to stderr, and a refusal of the service is one line on stderr, exit 1."""

    @functools.wraps(f)
    def run(*args, **kwargs):
        with _logs_on_stderr():
            origin = logs.origin.set(f"cli on {socket.gethostname()}")
            try:
                return f(*args, **kwargs)
            except DomainError as err:
                fail(f"error: {err.code}: {err.detail}")
            except OperationalError as err:
                fail(f"error: database-unavailable: the database cannot be reached ({first_line(err)})")
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise  # the command's own exit and usage errors
            except Exception as err:  # any other failure is one line too, never a traceback (-v logs it)
                log.error("%s failed on an unexpected %s", f.__name__, type(err).__name__, exc_info=err)
                fail(f"error: internal-error: {type(err).__name__}: {first_line(err)}")
            finally:
                logs.origin.reset(origin)

    return with_appcontext(run)


def pdm():
    return current_app.extensions["pdm"]


def lifecycle() -> Lifecycle:
    return pdm().lifecycle


def operators() -> Operators:
    return pdm().operators


# -- output ------------------------------------------------------------------------


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime(schemas.TIMESTAMP)


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return timestamp(value)
    return str(value)


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> None:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [headers] + cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")


def blocked_line(blocked: Blocked) -> str:
    return f"DNS blocked ({blocked.reason}) since {cell(blocked.since)}: {blocked.detail}"


def failing_line(failing: Failing) -> str:
    return f"DNS passes failing since {cell(failing.since)}: {failing.error}"


# -- the group ---------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pool-domain-manager", prog_name=PROG)
@click.option("-v", "--verbose", is_flag=True,
              help="Also show the service's INFO log lines (on stderr; PDM_LOG_LEVEL still applies).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Operate pool-domain-manager from inside its pod: allocations, their history and
    the pools' DNS records at the registrar.

    Configured from the service's environment variables (PDM_DATABASE_URL,
    DYNADOT_API_KEY, DYNADOT_MANAGED_DOMAINS, ...). Answers go to stdout (--json for
    scripts), log lines (warnings and errors; -v for all) and errors to stderr.
    Exit status: 0 success, 1 failure or drift, 2 usage or configuration error.
    """
    ctx.meta[VERBOSE] = verbose
    if not isinstance(ctx.obj, ScriptInfo):
        ctx.obj = ScriptInfo(create_app=app_from_environment, set_debug_flag=False)
