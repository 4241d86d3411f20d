"""The layers of ``pdm_app``, read from its source (the import statements, parsed; nothing
is imported): what may import what, and which modules stay pure.

A module's imports are every ``import``/``from`` statement in it, at any depth (a
function-level import counts), except those under ``if TYPE_CHECKING:``. The rules hold
for the transitive closure within ``pdm_app``: a module that may not import X may not
import anything that imports X either.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pdm_app"
# The entry points the service runs from, beside the package itself.
ENTRY_POINTS = (ROOT / "wsgi.py", ROOT / "gunicorn.conf.py", ROOT / "alembic" / "env.py")
# Third-party libraries that do I/O or hold a framework: never in the pure rules.
IMPURE_LIBRARIES = ("flask", "werkzeug", "sqlalchemy", "psycopg", "requests", "urllib3", "apscheduler", "gunicorn",
                    "dns", "flask_limiter", "limits")
# Most a production module may hold without saying at its top why it is one module.
LONGEST = 400
LONG_ON_PURPOSE = "Long on purpose:"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


@functools.cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports: absolute names, a ``from P import m`` of a module
    ``P.m`` counted as ``P.m``."""
    name = module_name(path) if path.is_relative_to(PACKAGE) else path.stem
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, path.name == "__init__.py", node.level, node.module)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return frozenset(found)


@functools.cache
def closure(name: str) -> frozenset[str]:
    """Everything ``name`` imports, directly or through other modules of ``pdm_app``."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for imported in imports_of(MODULES[current]):
            if imported not in seen:
                seen.add(imported)
                if imported in MODULES:
                    todo.append(imported)
    return frozenset(seen)


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offending(names, *forbidden: str) -> dict[str, list[str]]:
    """For each module of ``names``, what it reaches of ``forbidden``."""
    found = {n: sorted(i for i in closure(n) if under(i, *forbidden)) for n in names}
    return {n: bad for n, bad in found.items() if bad}


def service_modules() -> list[str]:
    return [n for n in MODULES if not under(n, "pdm_app.testing")]


def dns_modules(*subpackages: str) -> list[str]:
    return [n for n in MODULES if any(under(n, f"pdm_app.dns.{s}") for s in subpackages)]


BOTTOM_OF_DNS = ("zone", "errors", "ownership", "backend", "policy")
ENGINE = ("engine", "resync", "calls", "bookkeeping")
BACKENDS = ("dynadot", "powerdns")
CALLERS_OF_DNS = ("pdm_app.services", "pdm_app.api", "pdm_app.cli", "pdm_app.jobs", "pdm_app.customer_domains",
                  "pdm_app.testing")
PURE = ["pdm_app.domain", *[f"pdm_app.dns.{m}" for m in BOTTOM_OF_DNS], "pdm_app.dns.dynadot.plan",
        "pdm_app.dns.powerdns.plan"]


def test_the_layout_is_what_the_rules_speak_of():
    # A rule over modules that do not exist would pass for nothing.
    for name in [*PURE, *[f"pdm_app.dns.{m}" for m in ENGINE], "pdm_app.dns.dynadot.backend",
                 "pdm_app.dns.powerdns.backend", "pdm_app.customer_domains.flips", "pdm_app.testing.fake_dynadot"]:
        assert name in MODULES, name
    assert "pdm_app.dns.dynadot.plan" in closure("pdm_app.dns.dynadot.backend")  # the reader sees through imports


def test_nothing_the_service_runs_imports_the_test_doubles():
    assert offending(service_modules(), "pdm_app.testing") == {}
    for entry in ENTRY_POINTS:
        reached = set(imports_of(entry))
        for name in list(reached):
            if name in MODULES:
                reached |= closure(name)
        assert not [n for n in reached if under(n, "pdm_app.testing")], entry


def test_the_dns_engine_knows_its_backends_only_by_their_protocol():
    names = [*dns_modules(*ENGINE), *dns_modules(*BOTTOM_OF_DNS)]
    assert offending(names, *(f"pdm_app.dns.{b}" for b in BACKENDS)) == {}


def test_the_bottom_of_the_dns_package_imports_nothing_above_it():
    assert offending(dns_modules(*BOTTOM_OF_DNS), *(f"pdm_app.dns.{m}" for m in ENGINE + BACKENDS)) == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_imports_neither_the_engine_nor_another_backend(backend):
    others = [f"pdm_app.dns.{b}" for b in BACKENDS if b != backend]
    assert offending(dns_modules(backend), *others, *(f"pdm_app.dns.{m}" for m in ENGINE)) == {}


def test_the_dns_package_imports_none_of_its_callers():
    names = [n for n in MODULES if under(n, "pdm_app.dns")]
    assert offending(names, *CALLERS_OF_DNS) == {}
    # Nor the composition root (``pdm_app`` itself, where create_app builds everything).
    assert [n for n in names if "pdm_app" in closure(n)] == []


def test_customers_domains_are_apart_from_the_pools_dns():
    names = [n for n in MODULES if under(n, "pdm_app.customer_domains")]
    assert offending(names, "pdm_app.dns", "pdm_app.services", "pdm_app.api", "pdm_app.cli", "flask") == {}


def test_the_use_cases_know_nothing_of_the_http_layer():
    names = [n for n in MODULES if under(n, "pdm_app.services", "pdm_app.customer_domains.flips")]
    assert names
    assert offending(names, "flask", "werkzeug", "pdm_app.api", "pdm_app.cli") == {}


@pytest.mark.parametrize("name", PURE)
def test_the_rules_and_the_planning_are_pure(name):
    # No database, network or framework: what a unit test can run in microseconds.
    assert offending([name], *IMPURE_LIBRARIES, "pdm_app.db", "pdm_app.models", "pdm_app.unit_of_work",
                     "pdm_app.locks", "pdm_app.outbound") == {}


def test_no_production_module_is_long_without_saying_why():
    long = {}
    for name in service_modules():
        path = MODULES[name]
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > LONGEST and LONG_ON_PURPOSE not in docstring:
            long[name] = lines
    assert long == {}, f"split these, or say at their top why not ({LONG_ON_PURPOSE!r} in the docstring)"


def test_every_package_says_what_it_holds():
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            assert ast.get_docstring(ast.parse(path.read_text())), name


def test_every_dns_host_the_settings_accept_has_a_backend():
    # A new host is a folder under pdm_app/dns and one line in the composition root.
    import pdm_app
    from pdm_app.config import DNS_BACKENDS

    assert set(pdm_app.DNS_HOSTS) == set(DNS_BACKENDS)
    for kind, build in pdm_app.DNS_HOSTS.items():
        assert build.__module__ == f"pdm_app.dns.{kind}", kind
