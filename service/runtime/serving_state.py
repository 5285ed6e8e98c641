"""What serve's embedded evaluation worker is doing, shared through one small file.

``modelreg serve`` supervises its evaluation worker from the gunicorn master and
answers ``/readyz`` from every gunicorn worker: they share a state file (in
serve's own temporary directory) whose path serve puts in the environment before
gunicorn forks. The supervisor writes ``starting`` and ``down``; the worker itself
writes ``ready`` (with its isolation level) once its sandbox is warm. A state that
names a process that is gone is ``down`` whatever it says, so a worker killed
between two writes is never reported ready.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_ENV = "MODELREG_EMBEDDED_WORKER_STATE"


@dataclass(frozen=True)
class EmbeddedWorker:
    state: str  # starting, ready, down
    isolation: str | None
    restarts: int

    @property
    def ready(self) -> bool:
        return self.state == "ready"


def write(path: str | Path, **fields: Any) -> None:
    """Replace the state file atomically (readers never see half a file)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, target)


def update(path: str | Path, **fields: Any) -> None:
    """Change some fields, keeping the others (the worker keeps the supervisor's count)."""
    write(path, **{**read_raw(path), **fields})


def read_raw(path: str | Path) -> dict[str, Any]:
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def embedded_worker() -> EmbeddedWorker | None:
    """The embedded worker's state, or ``None`` when serve runs none (or this is no serve)."""
    path = os.environ.get(STATE_ENV)
    if not path:
        return None
    raw = read_raw(path)
    state = raw.get("state") if isinstance(raw.get("state"), str) else "starting"
    if state == "ready" and not _alive(raw.get("pid")):
        state = "down"
    isolation = raw.get("isolation") if isinstance(raw.get("isolation"), str) else None
    restarts = raw.get("restarts")
    return EmbeddedWorker(str(state), isolation, restarts if isinstance(restarts, int) else 0)
