"""The ``strict`` isolation level: a warm host inside bubblewrap, one child per job.

Each worker starts one long-lived host process (:mod:`modelreg.evaluation.host`,
the only file of the service it can see) inside a bubblewrap sandbox:

* every namespace unshared: no network (not even loopback), its own pid
  namespace (it sees only its own processes), uid and gid 65534, no capabilities;
* a read-only view of the Python runtime (``/usr``, the interpreter, the
  virtual environment) and nothing else of the machine: no database file, no
  artifact store, no job directories, no ``/etc``, no other process's ``/proc``;
* an empty environment (``--clearenv``: no ``MODELREG_*``, no credentials);
* writable only ``/tmp`` and ``/dev/shm``, each a tmpfs of ``evaluation_scratch_mb``;
* a cgroup of its own: memory of all its processes together
  (``evaluation_memory_mb``) and their number (``evaluation_max_processes``);
  per process ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_NOFILE``, ``RLIMIT_FSIZE``.

The host imports the scientific stack once, then for every job receives the
artifact's bytes and the pickled feature columns on its stdin, forks a child that
loads and predicts, and sends back the child's answer. Before answering, it kills
every other process of the sandbox, empties the scratch directories and checks
that nothing changed its own limits, priority or CPU affinity; if anything did,
it says so and exits, and the worker starts a fresh host for the next job. The
worker treats the host as untrusted too: it reads only length-prefixed frames,
bounded, and non-executable answers (:mod:`modelreg.evaluation.answers`); a host
that dies, hangs or says something malformed fails the job and is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from modelreg.config import Settings
from modelreg.evaluation.cgroups import Cgroup, StrictUnavailable
from modelreg.evaluation.child import Limits, Spec
from modelreg.evaluation.sandbox import MAX_ANSWER_BYTES, Outcome, exit_outcome, memory_outcome

_LENGTH = struct.Struct(">Q")
_HOST_FILE = Path(__file__).with_name("host.py")
_HOST_IN_SANDBOX = "/run/modelreg/host.py"
_MAX_HEADER = 64 * 1024
_START_TIMEOUT = 120.0
_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()

REFUSAL_HINT = (
    'set evaluation_isolation = "process" (MODELREG_EVALUATION_ISOLATION=process) to '
    "evaluate with the weaker process level instead; see `modelreg doctor`"
)


class _HostGone(Exception):
    pass


class _Expired(Exception):
    pass


class _Lost(Exception):
    pass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


# -- the bubblewrap command ----------------------------------------------------------------


def bwrap_executable(settings: Settings) -> str | None:
    return shutil.which(settings.evaluation_bwrap)


def runtime_paths() -> list[str]:
    """What the host's Python needs to see, read-only: prefixes and library directories."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    }
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            candidates.add(sysconfig.get_paths()[key])
    found: set[str] = set()
    for path in candidates:
        for variant in (os.path.abspath(path), os.path.realpath(path)):
            if os.path.isdir(variant):
                found.add(variant.rstrip("/") or "/")
    kept: list[str] = []
    for path in sorted(found, key=len):  # a directory inside a bound one is bound already
        if path == "/usr" or path.startswith("/usr/"):
            continue
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def bwrap_command(settings: Settings, bwrap: str) -> list[str]:
    scratch = str(settings.evaluation_scratch_mb * 1024 * 1024)
    command = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib")):
        command += ["--symlink", target, link]
    if os.path.isdir("/usr/lib64"):
        command += ["--symlink", "usr/lib64", "/lib64"]
    places = sandbox_places(runtime_paths())
    for outside, inside in places:
        command += ["--ro-bind", outside, inside]
    command += ["--ro-bind", str(_HOST_FILE), _HOST_IN_SANDBOX]
    command += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        scratch,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        "--size",
        scratch,
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
    ]
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One thread per BLAS/OpenMP pool: each thread counts against pids.max.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "JOBLIB_MULTIPROCESSING": "0",
    }
    for key, value in environment.items():
        command += ["--setenv", key, value]
    return [*command, "--", placed(sys.executable, places), "-I", _HOST_IN_SANDBOX]


# The sandbox's own scratch directories hide whatever lies below them outside.
_SCRATCH_DIRS = ("/tmp", "/dev")


def sandbox_places(paths: list[str]) -> list[tuple[str, str]]:
    """Where each runtime directory appears in the sandbox: at its own path, except
    below a scratch directory (a virtual environment in ``/tmp``, as a CI checkout
    makes), which its tmpfs would hide and wiping would try to empty; those appear
    under ``/run/modelreg/rt/<n>`` instead.

    >>> sandbox_places(["/opt/py", "/tmp/ci/.venv"])
    [('/opt/py', '/opt/py'), ('/tmp/ci/.venv', '/run/modelreg/rt/1')]
    """
    places = []
    for n, path in enumerate(paths):
        hidden = any(path == d or path.startswith(d + "/") for d in _SCRATCH_DIRS)
        places.append((path, f"/run/modelreg/rt/{n}" if hidden else path))
    return places


def placed(path: str, places: list[tuple[str, str]]) -> str:
    """``path`` as the sandbox sees it.

    A virtual environment's interpreter keeps working moved: Python finds its prefix
    from ``pyvenv.cfg`` beside the path it was started by.

    >>> placed("/tmp/ci/.venv/bin/python", [("/tmp/ci/.venv", "/run/modelreg/rt/1")])
    '/run/modelreg/rt/1/bin/python'
    """
    for outside, inside in places:
        if path == outside or path.startswith(outside + "/"):
            return inside + path[len(outside) :]
    return path


def _in_cgroup(procs: list[str], command: list[str]) -> list[str]:
    """``command``, started by a shell that first moves itself into the cgroup."""
    script = (
        'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; '
        'n=$((n - 1)); done; exec "$@"'
    )
    return ["/bin/sh", "-c", script, "sh", str(len(procs)), *procs, *command]


# -- checks --------------------------------------------------------------------------------


def probe(settings: Settings) -> list[Check]:
    """What ``modelreg doctor`` prints: can this machine run the strict level?"""
    checks: list[Check] = []
    bwrap = bwrap_executable(settings)
    checks.append(
        Check(
            "bwrap",
            bwrap is not None,
            bwrap
            or f"{settings.evaluation_bwrap!r} not found (Debian: apt-get install bubblewrap)",
        )
    )
    if bwrap is not None:
        try:
            done = subprocess.run(
                [bwrap, "--unshare-all", "--uid", "65534", "--gid", "65534", "--ro-bind", "/usr"]
                + ["/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib"]
                + (["--symlink", "usr/lib64", "/lib64"] if os.path.isdir("/usr/lib64") else [])
                + ["--proc", "/proc", "--dev", "/dev", "--clearenv", "--", "/bin/true"],
                capture_output=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin"},
            )
            ok, detail = done.returncode == 0, done.stderr.decode(errors="replace").strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, str(exc)
        checks.append(
            Check(
                "userns",
                ok,
                "user, pid, network and mount namespaces work"
                if ok
                else f"bwrap cannot create namespaces: {detail[:300]} (user namespaces refused? "
                "in a container: seccomp and AppArmor must allow them)",
            )
        )
    else:
        checks.append(Check("userns", False, "not checked: no bwrap"))
    try:
        group = Cgroup.create(settings, f"modelreg-doctor-{os.getpid()}")
    except StrictUnavailable as exc:
        checks.append(Check("cgroup memory", False, str(exc)))
        checks.append(Check("cgroup pids", False, str(exc)))
    else:
        where = ", ".join(str(d) for d in group.dirs) or "the container's own (mem_limit)"
        checks.append(Check("cgroup memory", True, f"cgroup v{group.version}: {where}"))
        checks.append(Check("cgroup pids", True, f"pids.max {settings.evaluation_max_processes}"))
        group.remove()
    return checks


def level_that_runs(settings: Settings, checks: list[Check]) -> tuple[str | None, str]:
    """The level a worker would run with these checks, or ``None`` (it refuses), and why."""
    if settings.evaluation_isolation == "process":
        return "process", "evaluation_isolation = process (chosen explicitly)"
    failed = [c for c in checks if not c.ok]
    if not failed:
        return "strict", "every check passed"
    reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    return None, (
        f"the strict level (evaluation_isolation = strict) cannot run here: {reasons}. "
        + REFUSAL_HINT
    )


# -- the executor --------------------------------------------------------------------------


class _Host:
    """One running sandbox: the bwrap process, its cgroup, its pipes."""

    def __init__(self, settings: Settings, bwrap: str) -> None:
        with _counter_lock:
            n = next(_counter)
        self.cgroup = Cgroup.create(settings, f"modelreg-sandbox-{os.getpid()}-{n}")
        # Where bwrap says why it could not start; closed in stop().
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                _in_cgroup(self.cgroup.procs, bwrap_command(settings, bwrap)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env={"PATH": "/usr/bin:/bin"},
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            self.cgroup.remove()
            raise StrictUnavailable(f"cannot start bubblewrap: {exc}") from exc
        assert self.process.stdin is not None and self.process.stdout is not None
        self.input = self.process.stdin.fileno()
        self.output = self.process.stdout.fileno()
        os.set_blocking(self.input, False)
        self.buffer = bytearray()

    def start(self) -> None:
        try:
            hello = json.loads(self.frame(time.monotonic() + _START_TIMEOUT, _MAX_HEADER, None))
        except (_HostGone, _Expired, ValueError) as exc:
            with contextlib.suppress(OSError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            self.stderr.seek(0)
            said = self.stderr.read(4000).decode(errors="replace").strip()
            self.stop()
            raise StrictUnavailable(
                f"the sandbox did not start ({type(exc).__name__}): {said or 'no output'}"
            ) from None
        if not (isinstance(hello, dict) and hello.get("ready") is True):
            self.stop()
            raise StrictUnavailable("the sandbox did not start: unexpected greeting")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.cgroup.remove()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def send(self, parts: list[bytes], deadline: float, tick: Callable[[], None] | None) -> None:
        for part in parts:
            view = memoryview(part)
            while view:
                self._wait([], [self.input], deadline, tick)
                try:
                    view = view[os.write(self.input, view) :]
                except BlockingIOError:
                    continue
                except OSError as exc:  # broken pipe: the host is gone
                    raise _HostGone(str(exc)) from None

    def _wait(
        self, r: list[int], w: list[int], deadline: float, tick: Callable[[], None] | None
    ) -> None:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise _Expired
            ready = select.select(r, w, [], min(deadline - now, 0.2))
            if ready[0] or ready[1]:
                return
            if tick is not None:
                tick()
            # Nothing more will come once the pipe is drained.
            if r and not self.alive() and not select.select(r, [], [], 0)[0]:
                raise _HostGone("the sandbox host exited")

    def _fill(self, size: int, deadline: float, tick: Callable[[], None] | None) -> None:
        while len(self.buffer) < size:
            self._wait([self.output], [], deadline, tick)
            chunk = os.read(self.output, max(1 << 16, min(size - len(self.buffer), 1 << 24)))
            if not chunk:
                raise _HostGone("the sandbox host closed its pipe")
            self.buffer += chunk

    def frame(self, deadline: float, limit: int, tick: Callable[[], None] | None) -> bytes:
        """One length-prefixed frame, at most ``limit`` bytes (more: the host is broken)."""
        self._fill(_LENGTH.size, deadline, tick)
        (length,) = _LENGTH.unpack_from(self.buffer)
        if length > limit:
            raise _HostGone(f"the sandbox host sent a frame of {length} bytes (limit {limit})")
        self._fill(_LENGTH.size + length, deadline, tick)
        data = bytes(self.buffer[_LENGTH.size : _LENGTH.size + length])
        del self.buffer[: _LENGTH.size + length]
        return data


class Confined:
    """The production executor of the strict level (see the module docstring)."""

    isolation = "strict"

    def __init__(self, settings: Settings, bwrap: str) -> None:
        self.settings = settings
        self.bwrap = bwrap
        self.timeout = settings.evaluation_timeout
        self.limits = Limits(
            memory_mb=settings.evaluation_memory_mb,
            cpu_seconds=settings.evaluation_cpu_seconds,
            output_bytes=settings.evaluation_scratch_mb * 1024 * 1024,
            open_files=settings.evaluation_open_files,
        )
        self.renew_every = max(settings.job_lease_seconds / 3, 0.2)
        self._host: _Host | None = None
        self._finalizer = weakref.finalize(self, Confined._stop_host_of, [None])

    @staticmethod
    def _stop_host_of(holder: list[_Host | None]) -> None:
        if holder[0] is not None:
            holder[0].stop()

    def _set_host(self, host: _Host | None) -> None:
        self._host = host
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, Confined._stop_host_of, [host])

    def warm(self) -> None:
        """Start the host now, so that the first job does not wait for its imports."""
        import sklearn.metrics  # noqa: F401  the worker scores; import that once, too

        self._ensure_host()

    def close(self) -> None:
        if self._host is not None:
            self._host.stop()
            self._set_host(None)

    def _ensure_host(self) -> _Host:
        if self._host is not None and self._host.alive():
            return self._host
        self.close()
        host = _Host(self.settings, self.bwrap)
        host.start()
        self._set_host(host)
        return host

    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome:
        try:
            host = self._ensure_host()
        except StrictUnavailable as exc:
            return Outcome(ok=False, error=f"the evaluation sandbox could not start: {exc}")
        artifact = Path(spec.artifact).read_bytes()
        features = Path(spec.features).read_bytes()
        job = {
            "format": spec.artifact_format,
            "task": spec.task,
            "skops_trusted": list(spec.skops_trusted),
            "limits": asdict(self.limits),
            "max_answer_bytes": MAX_ANSWER_BYTES,
            "artifact_bytes": len(artifact),
            "features_bytes": len(features),
        }
        header = json.dumps(job).encode()
        oom_before = host.cgroup.oom_kills()
        started = time.monotonic()
        deadline = started + self.timeout
        next_renewal = [started + self.renew_every]

        def tick() -> None:
            now = time.monotonic()
            if now >= next_renewal[0]:
                next_renewal[0] = now + self.renew_every
                if not keep_alive():
                    raise _Lost

        try:
            host.send([_LENGTH.pack(len(header)), header, artifact, features], deadline, tick)
            del artifact, features
            report = json.loads(host.frame(deadline, _MAX_HEADER, tick))
            answer = host.frame(deadline, MAX_ANSWER_BYTES, tick)
        except _Lost:
            self.close()
            return Outcome(ok=False, lost=True, error="the worker lost its claim")
        except _Expired:
            self.close()
            return Outcome(
                ok=False,
                error=f"the evaluation exceeded the wall-time limit of {self.timeout:g} s "
                "(MODELREG_EVALUATION_TIMEOUT) and was killed",
                details={"limit": "wall_time", "seconds": self.timeout, "isolation": "strict"},
            )
        except (_HostGone, ValueError) as exc:
            oom = host.cgroup.oom_kills() > oom_before
            self.close()
            ended = {"seconds": round(time.monotonic() - started, 3), "isolation": "strict"}
            if oom:
                return memory_outcome(self.limits, ended)
            return Outcome(
                ok=False,
                error="the evaluation's sandbox ended before it reported a result (the model's "
                f"code killed it or broke it: {exc})",
                details=ended,
            )
        elapsed = time.monotonic() - started
        oom = host.cgroup.oom_kills() > oom_before
        if not isinstance(report, dict) or report.get("clean") is not True:
            self.close()  # a fresh host for the next job
        details: dict[str, Any] = {"seconds": round(elapsed, 3), "isolation": "strict"}
        exit_code = report.get("exit_code") if isinstance(report, dict) else None
        code = exit_code if isinstance(exit_code, int) else None
        details["exit_code"] = code
        tail = report.get("output_tail") if isinstance(report, dict) else None
        if isinstance(tail, str) and tail:
            details["output_tail"] = tail[-2000:]
        if isinstance(report, dict) and report.get("has_answer") is True and answer:
            return Outcome(ok=True, answer=answer, details=details)
        if oom:
            return memory_outcome(self.limits, details)
        if code == 0:  # exited cleanly but said nothing (or too much)
            return Outcome(
                ok=False,
                error="the evaluation process sent no result, or one larger than "
                f"{MAX_ANSWER_BYTES} bytes",
                details=details,
            )
        return exit_outcome(code, elapsed, self.limits, details)


def confined_for(settings: Settings) -> Confined:
    """The strict executor, or :class:`StrictUnavailable` naming what is missing."""
    level, reason = level_that_runs(settings, probe(settings))
    if level != "strict":
        raise StrictUnavailable(reason)
    bwrap = bwrap_executable(settings)
    assert bwrap is not None
    return Confined(settings, bwrap)
