"""The base install is light: the client and the HTTP commands load nothing of the server.

CI runners and serving layers ``pip install modelreg`` (no extra): ``requests``,
``click``, ``packaging``, ``rich``. Each check runs in a fresh interpreter and reads its
``sys.modules``. The server's commands without the server extra are simulated by
blocking its libraries (``sys.modules[name] = None`` makes ``import name`` fail as a
missing module does); tests/e2e/test_packaging.py does the same in a real base install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The server's libraries (the server extra and what they pull in).
SERVER_LIBRARIES = (
    "flask",
    "flask_smorest",
    "flask_cors",
    "sqlalchemy",
    "werkzeug",
    "marshmallow",
    "alembic",
    "gunicorn",
    "psycopg2",
    "multipart",
    "prometheus_client",
    "sklearn",
    "pandas",
    "numpy",
    "scipy",
    "joblib",
    "skops",
)
# What of modelreg the base install may load: the client, the command line, the pure
# rules and the settings they read.
LIGHT = ("modelreg.client", "modelreg.cli", "modelreg.policies")
LIGHT_MODULES = frozenset({"modelreg", "modelreg.config", "modelreg.errors", "modelreg.names"})

# Runs the `modelreg` command in-process with argv, then reports what was loaded.
PROBE = """
import json, sys
argv, blocked = json.loads(sys.argv[1])
for name in blocked:
    sys.modules[name] = None
code = 0
if argv is None:
    import modelreg.client
else:
    from modelreg.cli.main import main
    try:
        main(argv, prog_name="modelreg")
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.__stderr__)
"""


class Probe:
    """``modelreg ARGV`` (``None``: only ``import modelreg.client``) in a fresh
    interpreter, with the ``blocked`` modules made unimportable."""

    def __init__(
        self, argv: list[str] | None, *, blocked: tuple[str, ...] = (), cwd: Path = ROOT
    ) -> None:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps([argv, list(blocked)])],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr  # the probe itself ran to its end
        *said, report = done.stderr.strip().splitlines()
        self.stdout = done.stdout
        self.stderr = said  # what the command wrote on stderr, line by line
        self.code: int = json.loads(report)["code"] or 0
        self.loaded = set(json.loads(report)["modules"])


def heavy(modules: set[str]) -> set[str]:
    """The modules of ``modules`` that belong to the server."""
    return {
        name
        for name in modules
        if name.split(".")[0] in SERVER_LIBRARIES
        or (
            name.startswith("modelreg.")
            and name not in LIGHT_MODULES
            and not any(name == p or name.startswith(p + ".") for p in LIGHT)
        )
    }


@pytest.mark.parametrize(
    "argv",
    [None, ["--help"], ["runs", "list", "--help"], ["serve", "--help"]],
    ids=["import modelreg.client", "modelreg --help", "modelreg runs list --help", "serve --help"],
)
def test_the_client_and_the_commands_help_load_no_server_library(argv: list[str] | None) -> None:
    probe = Probe(argv)

    assert probe.code == 0, probe.stderr
    assert heavy(probe.loaded) == set()
    assert "requests" in probe.loaded  # the probe did load the client: no vacuous pass
    if argv == ["--help"]:
        for name in ("serve", "worker", "token", "db", "runs", "champion", "policy"):
            assert f"  {name} " in probe.stdout, probe.stdout


def test_the_check_recognises_the_server_and_lets_the_client_through() -> None:
    assert heavy({"flask.app", "sqlalchemy", "modelreg.db.models", "modelreg.app"}) == {
        "flask.app",
        "sqlalchemy",
        "modelreg.db.models",
        "modelreg.app",
    }
    assert heavy({"modelreg.client.loader", "modelreg.config", "requests", "click"}) == set()


@pytest.mark.parametrize(
    "argv",
    [["serve"], ["worker", "--once"], ["doctor"], ["token", "list"], ["db", "current"]],
    ids=" ".join,
)
def test_a_server_command_without_the_server_extra_says_to_install_it_and_exits_2(
    argv: list[str], tmp_path: Path
) -> None:
    probe = Probe(argv, blocked=SERVER_LIBRARIES, cwd=tmp_path)

    assert probe.code == 2
    assert len(probe.stderr) == 1, probe.stderr  # one line, no traceback
    line = probe.stderr[0]
    assert line.startswith(f"Error: modelreg {argv[0]}"), line
    assert "Install modelreg[server]: pip install 'modelreg[server]'" in line
    assert list(tmp_path.iterdir()) == []  # nothing was set up before the refusal


def test_an_http_command_runs_without_the_server_extra(tmp_path: Path) -> None:
    """It fails on the network, not on an import: nothing listens on port 9."""
    argv = ["models", "list", "--url", "http://127.0.0.1:9"]
    probe = Probe(argv, blocked=SERVER_LIBRARIES, cwd=tmp_path)

    assert probe.code == 1
    assert probe.stderr == ["error: cannot reach http://127.0.0.1:9: connection refused"]
