"""The architecture rules of STYLE.md, checked on the source: pure modules stay pure, each
third-party library has one home, and only the CLI prints or exits."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "watcher"

#: Decide things from data only: no network, database, mail, scheduler or terminal.
PURE = {
    "article",
    "config",
    "parse",
    "text",
    "phrases",
    "attribution",
    "match",
    "route",
    "render",
    "dashboard",
    "backoff",
    "health",
    "types",
    "errors",
}
#: Where each library may be imported. A second importer means a second place to keep in step.
HOMES = {
    "sqlalchemy": {"store"},
    "alembic": {"store"},
    "requests": {"fetch", "deliver"},
    "urllib3": {"fetch"},
    "feedparser": {"parse"},
    "selectolax": {"parse"},
    "rapidfuzz": {"phrases"},
    "apscheduler": {"service"},
    "click": {"cli"},
    "rich": {"cli"},
    "yaml": {"config"},
    "pydantic": {"config"},
    "jinja2": {"render"},
    "smtplib": {"deliver"},
    "standardwebhooks": {"deliver"},
    "aiosmtpd": {"mailsink"},
    "pebble": {"workers"},
    "prometheus_client": {"metrics"},
    "procrastinate": {"cluster"},
    "trafilatura": {"article"},
}


def imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_import_only_pure_modules_from_watcher(module: str) -> None:
    # match compiles the speakers and themes config validated: one schema, not a copy in types.
    inner = {name for name in imports(module) if name.startswith("watcher")}
    assert inner <= {f"watcher.{m}" for m in PURE}, f"{module} imports {inner}"


@pytest.mark.parametrize("module", MODULES)
def test_every_library_is_imported_only_in_its_home(module: str) -> None:
    roots = {name.split(".")[0] for name in imports(module)}
    strays = sorted(lib for lib, homes in HOMES.items() if lib in roots and module not in homes)
    assert not strays, f"watcher/{module}.py imports {strays}; see HOMES in this test"


@pytest.mark.parametrize("module", [m for m in MODULES if m not in ("cli", "__main__")])
def test_only_the_cli_prints_or_exits(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    printing = [f.lineno for f in calls if isinstance(f, ast.Name) and f.id == "print"]
    exiting = [
        f.lineno
        for f in calls
        if isinstance(f, ast.Attribute) and f.attr == "exit" and isinstance(f.value, ast.Name) and f.value.id == "sys"
    ]
    assert not printing and not exiting, f"{module}.py prints or exits at lines {printing + exiting}"


def test_importing_the_package_is_cheap() -> None:
    code = "import sys, watcher; print(sorted(m for m in ('requests', 'sqlalchemy', 'feedparser') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert result.stdout.strip() == "[]"


def test_short_lived_commands_do_not_import_what_only_the_daemon_or_a_change_needs() -> None:
    """`watcher poll` from cron starts often: the scheduler, migrations, parser, matcher and
    templates are imported only when used (an all-304 poll needs none of them)."""
    code = (
        "import sys, watcher.cli, watcher.service, watcher.store, watcher.deliver, watcher.workers; "
        "print(sorted(m for m in ('apscheduler', 'alembic', 'feedparser', 'rapidfuzz', 'jinja2', 'prometheus_client') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert result.stdout.strip() == "[]"
