"""Run an evaluation in a child process with limits on wall time, CPU time and memory.

Loading a joblib or pickle artifact runs code. The worker therefore never loads
one itself: every evaluation runs in a fresh child forked from a fork server that
has the scientific stack preloaded (a fork costs milliseconds, an import of
scikit-learn a second). The child gets its own process group, an address-space
limit (``RLIMIT_AS``), a CPU-time limit (``RLIMIT_CPU``) and no core dumps; the
worker kills the whole group when the wall-time limit passes or the worker loses
its claim on the job. Results come back as JSON on a pipe, size-capped.

What this protects: the worker and the web process keep going whatever the model
does to its own process (hang, crash the interpreter, exhaust memory or CPU).
What it does not: the child runs as the worker's user and can read what that user
can read, write where it can write, and open network connections. See the README's
trust model.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from service.evaluation.child import UNREPORTED_EXIT, Limits, Spec

_MAX_RESULT_BYTES = 1024 * 1024
_LOG_TAIL_BYTES = 2000
_CHILD_MODULE = "service.evaluation.child"


@dataclass(frozen=True)
class Outcome:
    """What an evaluation gave: values, or an error that says what went wrong."""

    ok: bool
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    lost: bool = False  # the worker lost its claim; nothing may be stored


class Executor(Protocol):
    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome: ...


def _preload() -> list[str]:
    """Modules the fork server imports once for every child.

    Each child re-executes the worker's main module (multiprocessing's rule); with
    that module's imports already loaded in the fork server, doing so costs
    microseconds instead of the import time of the whole command line.
    """
    # The child module and this one (each child runs ``_child_entry`` from here), a
    # warm-up evaluation (see ``warm``), and the CLI, which the `modelreg` console
    # script re-runs by path in every child.
    modules = [_CHILD_MODULE, __name__, "service.evaluation.warm", "service.cli"]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if name and not name.endswith("__main__") and name not in modules:
        modules.append(name)  # `python -m pkg.mod`: re-run as a module
    return modules


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_preload())
    return ctx


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Sandbox:
    """The production executor: one forked, limited child per evaluation."""

    def __init__(
        self, *, timeout: float, cpu_seconds: int, memory_mb: int, renew_every: float
    ) -> None:
        self.timeout = timeout
        self.limits = Limits(memory_mb=memory_mb, cpu_seconds=cpu_seconds)
        self.renew_every = renew_every
        self._ctx = _context()

    def warm(self) -> None:
        """Start the fork server now, so that the first job does not wait for it."""
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome:
        log = workdir / "child.log"
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child_entry,
            args=(sender, asdict(spec), asdict(self.limits), str(log)),
            daemon=True,
        )
        process.start()
        # The limit starts once the child exists: starting the fork server is ours.
        started = time.monotonic()
        sender.close()
        try:
            data = self._wait(process, receiver, started, keep_alive)
        finally:
            receiver.close()
            if process.pid is not None:
                _kill_group(process.pid)  # whatever the model spawned goes with it
            process.join(5)
            if process.is_alive():  # pragma: no cover - SIGKILL cannot be ignored
                process.kill()
                process.join(5)
        elapsed = time.monotonic() - started
        if isinstance(data, Outcome):
            return data
        return self._interpret(data, process.exitcode, elapsed, log)

    def _wait(
        self,
        process: Any,
        receiver: Connection,
        started: float,
        keep_alive: Callable[[], bool],
    ) -> bytes | Outcome | None:
        next_renewal = started + self.renew_every
        deadline = started + self.timeout
        while True:
            now = time.monotonic()
            wait = max(0.0, min(deadline, next_renewal) - now)
            if receiver.poll(wait):
                try:
                    return receiver.recv_bytes(_MAX_RESULT_BYTES)
                except (EOFError, OSError):
                    return None  # the child ended without a word (or said too much)
            now = time.monotonic()
            if now >= deadline:
                return Outcome(
                    ok=False,
                    error=f"the evaluation exceeded the wall-time limit of {self.timeout:g} s "
                    "(MODELREG_EVALUATION_TIMEOUT) and was killed",
                    details={"limit": "wall_time", "seconds": self.timeout},
                )
            if now >= next_renewal:
                next_renewal = now + self.renew_every
                if not keep_alive():
                    return Outcome(ok=False, lost=True, error="the worker lost its claim")

    def _interpret(
        self, data: bytes | None, exitcode: int | None, elapsed: float, log: Path
    ) -> Outcome:
        details: dict[str, Any] = {"exit_code": exitcode, "seconds": round(elapsed, 3)}
        tail = _tail(log)
        if tail:
            details["output_tail"] = tail
        if data is not None:
            try:
                payload = json.loads(data)
            except ValueError:
                payload = None
            if isinstance(payload, dict) and payload.get("ok") is True:
                return _success(payload, details)
            if isinstance(payload, dict) and isinstance(payload.get("error"), str):
                if payload.get("kind") == "memory":
                    return self._memory(details)
                if isinstance(payload.get("traceback"), str):
                    details["traceback"] = payload["traceback"]
                return Outcome(ok=False, error=payload["error"], details=details)
            return Outcome(
                ok=False, error="the evaluation process sent an unreadable result", details=details
            )
        if exitcode is not None and exitcode < 0:
            number = -exitcode
            cpu = self.limits.cpu_seconds
            if number == signal.SIGXCPU or (number == signal.SIGKILL and elapsed >= cpu):
                return Outcome(
                    ok=False,
                    error=f"the evaluation exceeded the CPU-time limit of {cpu} s "
                    "(MODELREG_EVALUATION_CPU_SECONDS) and was killed",
                    details={**details, "limit": "cpu_time"},
                )
            if number == signal.SIGXFSZ:
                return Outcome(
                    ok=False,
                    error="the evaluation wrote more output than allowed and was killed",
                    details={**details, "limit": "output"},
                )
            return Outcome(
                ok=False,
                error=f"the evaluation process was killed by {_signal_name(number)} "
                "(the model's code crashed the interpreter)",
                details=details,
            )
        if exitcode == UNREPORTED_EXIT:
            return self._memory(details)
        return Outcome(
            ok=False,
            error=f"the evaluation process exited with status {exitcode} before reporting a "
            "result (the model's code ended the interpreter)",
            details=details,
        )

    def _memory(self, details: dict[str, Any]) -> Outcome:
        return Outcome(
            ok=False,
            error=f"the evaluation exceeded the memory limit of {self.limits.memory_mb} MiB "
            "(MODELREG_EVALUATION_MEMORY_MB)",
            details={**details, "limit": "memory"},
        )


def _success(payload: dict[str, Any], details: dict[str, Any]) -> Outcome:
    metrics = payload.get("metrics")
    skipped = payload.get("skipped")
    if not (
        isinstance(metrics, dict)
        and all(isinstance(k, str) and isinstance(v, int | float) for k, v in metrics.items())
        and isinstance(skipped, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in skipped.items())
    ):
        return Outcome(
            ok=False, error="the evaluation process sent a malformed result", details=details
        )
    extra: dict[str, Any] = {k: payload[k] for k in ("rows", "seconds") if k in payload}
    return Outcome(
        ok=True,
        metrics={k: float(v) for k, v in metrics.items()},
        skipped=dict(skipped),
        details={**details, **extra},
    )


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _child_entry(conn: Any, spec: dict[str, Any], limits: dict[str, Any], log: str) -> None:
    from service.evaluation.child import main

    main(conn, spec, limits, log)


class InProcess:
    """Evaluates in the calling process, without isolation: the benchmark's baseline.

    Never used by the worker: it would load untrusted code into it.
    """

    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome:
        from service.evaluation.child import evaluate

        try:
            result = evaluate(spec)
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
        return _success({"ok": True, **result}, {})
