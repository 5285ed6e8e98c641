"""The project as users get it: a non-editable install into a fresh virtualenv.

Slow (it builds the wheel and installs the dependencies with pip), so it is one
test. First the base install (``pip install modelreg``, what CI runners and serving
layers take): the client imports, ``modelreg --help`` works, no server library is
installed, and ``modelreg serve`` names the server extra. Then the server extra goes
into the same virtualenv (``pip install 'modelreg[server]'``); the server runs from
an empty directory with no ``MODELREG_*`` variable set and must keep everything in
``./modelreg-data/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import TimeoutSession, clean_environ, free_port, launch

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 900
# Local state that is no part of the project's source.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "modelreg-data",
    "build",
    "dist",
    "*.egg-info",
)


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)} failed ({done.returncode})\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def test_the_base_install_is_a_light_client_and_the_server_extra_serves_from_an_empty_directory(
    tmp_path: Path,
) -> None:
    assert (REPO_ROOT / "pyproject.toml").is_file(), REPO_ROOT
    # Build from a copy: pip must never write into the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    venv = tmp_path / "venv"
    env = clean_environ(admin_token=False)
    for leak in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(leak, None)
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env, timeout=120)
    python, modelreg = venv / "bin" / "python", venv / "bin" / "modelreg"
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run([*pip, str(source)], cwd=tmp_path, env=env, timeout=PIP_TIMEOUT_S)
    assert modelreg.is_file(), "the install did not create the modelreg console script"

    # The base install: the client and the HTTP commands, nothing of the server.
    light = tmp_path / "light"
    light.mkdir()
    assert "serve" in run([str(modelreg), "--help"], cwd=light, env=env, timeout=60)
    installed = json.loads(
        run(
            [
                str(python),
                "-c",
                "import importlib.util, json, modelreg.client; print(json.dumps(sorted("
                "name for name in ('flask', 'sqlalchemy', 'gunicorn', 'sklearn', 'numpy') "
                "if importlib.util.find_spec(name))))",
            ],
            cwd=light,
            env=env,
            timeout=60,
        )
    )
    assert installed == []
    refused = subprocess.run(
        [str(modelreg), "serve"],
        cwd=light,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "pip install 'modelreg[server]'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert list(light.iterdir()) == []

    # The server extra, into the same virtualenv.
    run([*pip, f"{source}[server]"], cwd=tmp_path, env=env, timeout=PIP_TIMEOUT_S)

    empty = tmp_path / "empty"
    empty.mkdir()
    # The code that runs is the installed copy, with its defaults packaged inside it.
    where = json.loads(
        run(
            [
                str(python),
                "-c",
                "import json, modelreg, modelreg.config as c; "
                "print(json.dumps([modelreg.__file__, str(c._defaults_file())]))",
            ],
            cwd=empty,
            env=env,
            timeout=60,
        )
    )
    site_packages = str(venv / "lib")
    assert all(path.startswith(site_packages) for path in where), where
    assert list(empty.iterdir()) == []

    # Auth is on by default: the first token comes from the command line, offline.
    secret = run(
        [str(modelreg), "token", "create", "--name", "bootstrap", "--role", "admin"],
        cwd=empty,
        env=env,
        timeout=120,
    ).strip()
    assert secret.startswith("mr_"), secret

    port = free_port()
    server = launch(
        [str(modelreg), "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        port=port,
        log_path=tmp_path / "server.log",
    )
    try:
        with TimeoutSession(token=secret) as s:
            ready = s.get(f"{server.url}/readyz")
            assert ready.status_code == 200, ready.text
            anonymous = requests.get(f"{server.url}/api/v1/models", timeout=30)
            assert anonymous.status_code == 401, anonymous.text
            created = s.post(f"{server.url}/api/v1/models", json={"name": "AImodel"})
            assert created.status_code == 201, f"{created.text}\n{server.log()}"
            assert s.get(f"{server.url}/api/v1/models/aimodel").json()["name"] == "AImodel"
            version = s.post(f"{server.url}/api/v1/models/AImodel/versions", json={"version": "1"})
            assert version.status_code == 201, version.text
            content = b"a packaged model"
            run_created = s.post(
                f"{server.url}/api/v1/models/AImodel/versions/1.0/runs",
                files={"artifact": ("model.joblib", content), "metadata": (None, "{}")},
            )
            assert run_created.status_code == 201, f"{run_created.text}\n{server.log()}"
    finally:
        server.stop()

    data = empty / "modelreg-data"
    assert data.is_dir(), f"no ./modelreg-data in {sorted(p.name for p in empty.iterdir())}"
    assert [p.name for p in empty.iterdir()] == ["modelreg-data"]
    database = data / "modelreg.db"
    assert database.is_file() and database.stat().st_size > 0
    assert (data / "artifacts").is_dir()
    digest = hashlib.sha256(content).hexdigest()
    stored = data / "artifacts" / "sha256" / digest[:2] / digest[2:4] / digest
    assert stored.read_bytes() == content
