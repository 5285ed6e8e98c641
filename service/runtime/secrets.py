"""The admin token of ``modelreg serve``: read once, then in no process's environment.

``/proc/<pid>/environ`` shows the environment a process was *started* with, whatever
it later removes from ``os.environ``; gunicorn's forked workers show the same block.
So ``serve``, finding ``MODELREG_ADMIN_TOKEN`` in its environment, re-executes itself
at once with the variable removed and the token written into a pipe it inherits
(``MODELREG_ADMIN_TOKEN_FD``, a descriptor number, is all its new environment says).
The new image reads the pipe, closes it and keeps only the token's SHA-256
(``Settings.admin_token_sha256``): the gunicorn master, its workers and the
embedded evaluation worker (started without it) hold the secret in no environment
and in no setting. ``MODELREG_ADMIN_TOKEN_FILE`` (the Docker-secrets way) needs no
re-execution: the path is not the secret.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from modelreg.config import ENV_PREFIX

TOKEN_ENV = f"{ENV_PREFIX}ADMIN_TOKEN"
TOKEN_FILE_ENV = f"{ENV_PREFIX}ADMIN_TOKEN_FILE"
TOKEN_FD_ENV = f"{ENV_PREFIX}ADMIN_TOKEN_FD"
_MAX_TOKEN_BYTES = 4096  # far below a pipe's buffer: the write never blocks


def reexec_without_token_in_environment(argv: Sequence[str]) -> None:
    """If ``MODELREG_ADMIN_TOKEN`` is set, replace this process by ``python -m modelreg
    <argv>`` with the token in an inherited pipe instead; otherwise return."""
    token = os.environ.get(TOKEN_ENV)
    if token is None:
        return
    data = token.encode("utf-8", "surrogateescape")[:_MAX_TOKEN_BYTES]
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env[TOKEN_FD_ENV] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "modelreg", *argv], env)


def take_inherited_token() -> str | None:
    """The token the previous image passed in its pipe (read once, pipe closed), if any."""
    fd_text = os.environ.pop(TOKEN_FD_ENV, None)
    if fd_text is None or not fd_text.isdigit():
        return None
    fd = int(fd_text)
    try:
        chunks = []
        while chunk := os.read(fd, _MAX_TOKEN_BYTES):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")
