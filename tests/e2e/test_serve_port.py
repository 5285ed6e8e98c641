"""``modelreg serve`` on a port another process holds: one line, exit status 2, nothing started."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import clean_environ

pytestmark = pytest.mark.e2e

MODELREG = str(Path(sys.executable).with_name("modelreg"))


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_2_before_starting_anything(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, env in [
            (["--port", str(port)], {}),
            ([], {"MODELREG_PORT": str(port)}),
        ]:
            started = time.monotonic()
            done = subprocess.run(
                [MODELREG, "serve", "--host", "127.0.0.1", *args],
                cwd=tmp_path,
                env=clean_environ(**env),
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            assert done.returncode == 2, done.stderr
            assert done.stdout == ""
            assert done.stderr == (
                f"Error: port {port} on 127.0.0.1 is in use: pass --port or set MODELREG_PORT\n"
            )
            assert time.monotonic() - started < 10  # no gunicorn retrying for seconds
            assert list(tmp_path.iterdir()) == []  # no database created, no worker started
