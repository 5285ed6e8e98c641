"""The ``policies`` package stays pure: standard library and ``packaging`` only.

DESIGN.md: "the ``policies`` package -- pure Python, no Flask, no SQLAlchemy" and
"``policies`` imports nothing from ``service``". Two independent checks: what a fresh
interpreter actually loads, and what the source files say they import.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "policies"
SOURCE_FILES = sorted(PACKAGE.rglob("*.py"))

FORBIDDEN = (
    "flask",
    "sqlalchemy",
    "werkzeug",
    "marshmallow",
    "service",
    "requests",
    "sqlite3",
    "socket",
)
ALLOWED_THIRD_PARTY = frozenset({"packaging", "__future__", "policies"})

# Imports the package and every submodule (found on disk, not from a hand-kept list),
# then reports what the interpreter has loaded.
PROBE = """
import importlib, json, pkgutil, sys
import policies
names = [m.name for m in pkgutil.walk_packages(policies.__path__, "policies.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"submodules": names, "modules": sorted(sys.modules)}))
"""


def _is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def _loaded_by_a_fresh_interpreter() -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _top_level_imports(source: str) -> set[str]:
    """Top-level names of every absolute import in ``source`` (relative ones are local)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _disallowed_imports(source: str) -> set[str]:
    return {
        name
        for name in _top_level_imports(source)
        if name not in sys.stdlib_module_names and name not in ALLOWED_THIRD_PARTY
    }


def test_importing_policies_and_every_submodule_loads_no_web_database_or_network_module():
    loaded = _loaded_by_a_fresh_interpreter()

    # The probe really imported the package's modules (guards against a vacuous pass).
    expected = {f"policies.{p.stem}" for p in SOURCE_FILES if p.stem != "__init__"}
    assert expected <= set(loaded["submodules"])
    assert expected <= set(loaded["modules"])

    offenders = [m for m in loaded["modules"] if _is_forbidden(m)]
    assert offenders == []


@pytest.mark.parametrize("module", ["flask", "flask.app", "service", "service.db", "socket"])
def test_the_forbidden_module_check_recognises_a_package_and_its_submodules(module):
    assert _is_forbidden(module)


@pytest.mark.parametrize("module", ["flasky", "services", "socketserver", "packaging", "ssl"])
def test_the_forbidden_module_check_does_not_match_mere_name_prefixes(module):
    assert not _is_forbidden(module)


def test_the_policies_package_has_the_modules_the_design_describes():
    stems = {p.stem for p in SOURCE_FILES}
    assert {"__init__", "versions", "policy", "selection", "stages"} <= stems


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_policies_source_file_imports_only_the_stdlib_packaging_or_policies(path):
    assert _disallowed_imports(path.read_text(encoding="utf-8")) == set()


@pytest.mark.parametrize(
    ("source", "offender"),
    [
        ("import flask", "flask"),
        ("from sqlalchemy.orm import Session", "sqlalchemy"),
        ("import os, requests", "requests"),
        ("def f():\n    from service.db import models\n", "service"),
    ],
)
def test_the_source_check_flags_an_import_from_outside_the_allowed_set(source, offender):
    assert _disallowed_imports(source) == {offender}


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import math\nfrom dataclasses import dataclass",
        "from packaging.version import Version",
        "from policies.policy import Policy",
        "from .versions import parse_version",
    ],
)
def test_the_source_check_accepts_stdlib_packaging_and_local_imports(source):
    assert _disallowed_imports(source) == set()
