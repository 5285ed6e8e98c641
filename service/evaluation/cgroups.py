"""The strict level's cgroups: memory and process limits for the whole sandbox.

A sandbox's processes together get ``evaluation_memory_mb`` and
``evaluation_max_processes``: under cgroup v2 in one cgroup, under v1 in the
``memory`` and ``pids`` hierarchies; in a container whose cgroup tree is read-only,
the container's own limits (``evaluation_cgroup = "container"``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from modelreg.config import Settings

_CGROUP = Path("/sys/fs/cgroup")


class StrictUnavailable(Exception):
    """This machine cannot run the strict level; the message says what is missing."""


def _own_cgroup(controller: str | None) -> str:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (None: v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or controller in names.split(","):
            return path
    raise StrictUnavailable(f"this process is in no {controller or 'cgroup v2'} cgroup")


def _write(path: Path, value: str) -> None:
    with path.open("w") as fh:
        fh.write(value)


class Cgroup:
    """The sandbox's cgroup(s): memory and pids limits, and a way to kill it all.

    cgroup v2 when ``/sys/fs/cgroup`` is a v2 mount (Docker, current distributions),
    otherwise v1's ``memory`` and ``pids`` hierarchies.
    """

    def __init__(self, dirs: list[Path], version: int, events: Path | None = None) -> None:
        self.dirs = dirs
        self.version = version
        self.events = events or (dirs[0] / "memory.events" if dirs else None)

    @classmethod
    def create(cls, settings: Settings, name: str) -> Cgroup:
        memory = settings.evaluation_memory_mb * 1024 * 1024
        pids = settings.evaluation_max_processes
        if settings.evaluation_cgroup == "container":
            return cls._container()
        try:
            if (_CGROUP / "cgroup.controllers").exists() or settings.evaluation_cgroup:
                base = Path(settings.evaluation_cgroup or _CGROUP / _own_cgroup(None).lstrip("/"))
                _delegate(base)
                _remove_stale(base)
                group = base / name
                group.mkdir(exist_ok=True)
                _write(group / "memory.max", str(memory))
                if (group / "memory.swap.max").exists():
                    _write(group / "memory.swap.max", "0")
                _write(group / "pids.max", str(pids))
                return cls([group], 2)
            mem = _CGROUP / "memory" / _own_cgroup("memory").lstrip("/") / name
            pid = _CGROUP / "pids" / _own_cgroup("pids").lstrip("/") / name
            for parent in (mem.parent, pid.parent):
                _remove_stale(parent)
            mem.mkdir(exist_ok=True)
            pid.mkdir(exist_ok=True)
            _write(mem / "memory.limit_in_bytes", str(memory))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                _write(mem / "memory.memsw.limit_in_bytes", str(memory))
            _write(pid / "pids.max", str(pids))
            return cls([mem, pid], 1)
        except (OSError, ValueError) as exc:
            raise StrictUnavailable(f"cannot create the sandbox's cgroup: {exc}") from exc

    @classmethod
    def _container(cls) -> Cgroup:
        """``evaluation_cgroup = "container"``: the container's own cgroup (v2, its
        namespace's root) is the limit; it must have a memory and a pids limit."""
        for name in ("memory.max", "pids.max"):
            try:
                value = (_CGROUP / name).read_text().strip()
            except OSError as exc:
                raise StrictUnavailable(f"cannot read the container's {name}: {exc}") from exc
            if value == "max":
                raise StrictUnavailable(
                    f"the container has no {name.split('.')[0]} limit ({name} is max): set "
                    "mem_limit and pids_limit (compose) or --memory and --pids-limit"
                )
        return cls([], 2, events=_CGROUP / "memory.events")

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_kills(self) -> int:
        """How often the kernel killed a process of the sandbox for memory."""
        source = self.events if self.version == 2 else self.dirs[0] / "memory.oom_control"
        if source is None:
            return 0
        try:
            for line in source.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
            if self.version == 1:
                return int((self.dirs[0] / "memory.failcnt").read_text())
        except (OSError, ValueError):
            pass
        return 0

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, until it is empty."""
        if not self.dirs:  # the container's cgroup: bwrap's end takes the sandbox with it
            return
        for _ in range(100):
            left = set()
            for procs in self.procs:
                with contextlib.suppress(OSError, ValueError):
                    left |= {int(p) for p in Path(procs).read_text().split()}
            if not left:
                return
            kill_file = self.dirs[0] / "cgroup.kill"
            if self.version == 2 and kill_file.exists():
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _remove_stale(parent: Path) -> None:
    """Empty sandbox cgroups of workers that were killed before they could remove them."""
    with contextlib.suppress(OSError):
        for found in parent.glob("modelreg-sandbox-*-*"):
            pid = found.name.split("-")[2]
            if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(OSError):
                found.rmdir()  # refused while a process is still in it


def _delegate(base: Path) -> None:
    """Make ``memory`` and ``pids`` available to the children of a v2 cgroup.

    A v2 cgroup with processes in it cannot hand controllers to children (the
    "no internal processes" rule). In a container, the worker's cgroup is the
    namespace's root and holds every process: those move to a leaf first.
    """
    control = base / "cgroup.subtree_control"
    wanted = {"memory", "pids"}
    if wanted <= set(control.read_text().split()):
        return
    try:
        _write(control, "+memory +pids")
        return
    except OSError:
        pass
    leaf = base / "modelreg-processes"
    leaf.mkdir(exist_ok=True)
    for pid in (base / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            _write(leaf / "cgroup.procs", pid)
    _write(control, "+memory +pids")
