"""``modelreg.policies`` stays pure: standard library and ``packaging`` only.

The rules of the registry are plain Python, with no Flask, no SQLAlchemy and nothing
else of modelreg. Two independent checks: what a fresh interpreter actually loads,
and what the source files say they import (import-linter checks the same in CI).
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
    "requests",
    "sqlite3",
    "socket",
)
ALLOWED_THIRD_PARTY = frozenset({"packaging", "__future__"})
OWN = "modelreg.policies"

# Imports the package and every submodule (found on disk, not from a hand-kept list),
# then reports what the interpreter has loaded.
PROBE = """
import importlib, json, pkgutil, sys
from modelreg import policies
names = [m.name for m in pkgutil.walk_packages(policies.__path__, "modelreg.policies.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"submodules": names, "modules": sorted(sys.modules)}))
"""


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_forbidden(module: str) -> bool:
    if any(_within(module, name) for name in FORBIDDEN):
        return True
    # The bare package `modelreg` is loaded on the way to its policies, nothing else of it.
    return _within(module, "modelreg") and module != "modelreg" and not _within(module, OWN)


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
    """Every module an absolute import in ``source`` names (relative ones are local)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "modelreg":  # from modelreg import policies
                names.update(f"modelreg.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def _disallowed_imports(source: str) -> set[str]:
    return {
        name.split(".")[0] if not _within(name, "modelreg") else name
        for name in _top_level_imports(source)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ALLOWED_THIRD_PARTY
        and not _within(name, OWN)
    }


def test_importing_policies_and_every_submodule_loads_no_web_database_or_network_module():
    loaded = _loaded_by_a_fresh_interpreter()

    # The probe really imported the package's modules (guards against a vacuous pass).
    expected = {f"{OWN}.{p.stem}" for p in SOURCE_FILES if p.stem != "__init__"}
    assert expected <= set(loaded["submodules"])
    assert expected <= set(loaded["modules"])

    offenders = [m for m in loaded["modules"] if _is_forbidden(m)]
    assert offenders == []


@pytest.mark.parametrize("module", ["flask", "flask.app", "modelreg.db", "modelreg.app", "socket"])
def test_the_forbidden_module_check_recognises_a_package_and_its_submodules(module):
    assert _is_forbidden(module)


@pytest.mark.parametrize(
    "module",
    ["flasky", "modelreg", "modelreg.policies.versions", "socketserver", "packaging", "ssl"],
)
def test_the_forbidden_module_check_does_not_match_mere_name_prefixes(module):
    assert not _is_forbidden(module)


def test_the_policies_package_has_the_modules_the_design_describes():
    stems = {p.stem for p in SOURCE_FILES}
    assert {"__init__", "versions", "policy", "selection", "stages"} <= stems


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_policies_source_file_imports_only_the_stdlib_packaging_or_itself(path):
    assert _disallowed_imports(path.read_text(encoding="utf-8")) == set()


@pytest.mark.parametrize(
    ("source", "offender"),
    [
        ("import flask", "flask"),
        ("from sqlalchemy.orm import Session", "sqlalchemy"),
        ("import os, requests", "requests"),
        ("def f():\n    from modelreg.db import models\n", "modelreg.db"),
        ("from modelreg import app", "modelreg.app"),
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
        "from modelreg.policies.policy import Policy",
        "from .versions import parse_version",
    ],
)
def test_the_source_check_accepts_stdlib_packaging_and_local_imports(source):
    assert _disallowed_imports(source) == set()
