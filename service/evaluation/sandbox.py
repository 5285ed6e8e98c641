"""The ``process`` isolation level, and what every level shares.

Loading a joblib or pickle artifact runs code. The worker therefore never loads
one itself. At the ``process`` level every evaluation runs in a fresh child forked
from a fork server that has the scientific stack preloaded (a fork costs
milliseconds, an import of scikit-learn a second). The child gets its own process
group, an address-space limit (``RLIMIT_AS``), a CPU-time limit (``RLIMIT_CPU``),
a limit on open files and no core dumps; the worker kills the whole group when the
wall-time limit passes or the worker loses its claim on the job.

Every level hands the child the feature columns only and gets predictions back
(:mod:`modelreg.evaluation.answers`); the worker scores them against the labels
itself (:func:`score_answer`), so nothing the child does can choose its score.

What this level does not protect: the child runs as the worker's user and can read
what that user can read, write where it can write, and open network connections.
The ``strict`` level (:mod:`modelreg.evaluation.confined`) closes that. See the
trust model (docs/explanation/trust-model.md).
"""

from __future__ import annotations

import contextlib
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

from modelreg.evaluation.answers import Malformed, decode, scores_of
from modelreg.evaluation.child import UNREPORTED_EXIT, Limits, Spec, answer_of
from modelreg.evaluation.child import main as child_main

# Predictions of a million rows with a few classes' probabilities fit easily.
MAX_ANSWER_BYTES = 256 * 1024 * 1024
_LOG_TAIL_BYTES = 2000
_CHILD_MODULE = "modelreg.evaluation.child"


@dataclass(frozen=True)
class Outcome:
    """What an evaluation gave: values, or an error that says what went wrong."""

    ok: bool
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    lost: bool = False  # the worker lost its claim; nothing may be stored
    # What the child answered (untrusted bytes), for :func:`score_answer`.
    answer: bytes | None = None


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
    modules = [_CHILD_MODULE, __name__, "modelreg.evaluation.warm", "modelreg.cli.main"]
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
    """The ``process`` level's executor: one forked, limited child per evaluation."""

    isolation = "process"

    def __init__(
        self,
        *,
        timeout: float,
        cpu_seconds: int,
        memory_mb: int,
        renew_every: float,
        open_files: int = 256,
    ) -> None:
        self.timeout = timeout
        self.limits = Limits(memory_mb=memory_mb, cpu_seconds=cpu_seconds, open_files=open_files)
        self.renew_every = renew_every
        self._ctx = _context()

    def warm(self) -> None:
        """Start the fork server now, so that the first job does not wait for it."""
        from multiprocessing import forkserver

        import sklearn.metrics  # noqa: F401  the worker scores; import that once, too

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
                    return receiver.recv_bytes(MAX_ANSWER_BYTES)
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
            return Outcome(ok=True, answer=data, details=details)
        return exit_outcome(exitcode, elapsed, self.limits, details)


def memory_outcome(limits: Limits, details: dict[str, Any]) -> Outcome:
    return Outcome(
        ok=False,
        error=f"the evaluation exceeded the memory limit of {limits.memory_mb} MiB "
        "(MODELREG_EVALUATION_MEMORY_MB)",
        details={**details, "limit": "memory"},
    )


def exit_outcome(
    exitcode: int | None, elapsed: float, limits: Limits, details: dict[str, Any]
) -> Outcome:
    """A child that ended without an answer: what its exit status says."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        cpu = limits.cpu_seconds
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
        return memory_outcome(limits, details)
    return Outcome(
        ok=False,
        error=f"the evaluation process exited with status {exitcode} before reporting a "
        "result (the model's code ended the interpreter)",
        details=details,
    )


def score_answer(outcome: Outcome, task: str, y_true: Any, limits: Limits) -> Outcome:
    """The trusted half: check the child's answer and compute every metric from it.

    A malformed answer is a failed evaluation that says what was wrong with it.
    """
    if outcome.answer is None:
        return outcome
    details = dict(outcome.details)
    try:
        answer = decode(outcome.answer)
        if not answer.ok:
            header = answer.header
            if header.get("kind") == "memory":
                return memory_outcome(limits, details)
            if isinstance(header.get("traceback"), str):
                details["traceback"] = header["traceback"][-4000:]
            return Outcome(ok=False, error=str(header.get("error", ""))[:2000], details=details)
        scores = scores_of(answer, task, y_true)
    except Malformed as exc:
        return Outcome(ok=False, error=str(exc), details=details)
    seconds = answer.header.get("seconds")
    if isinstance(seconds, dict) and all(
        isinstance(k, str) and isinstance(v, int | float) for k, v in seconds.items()
    ):
        details["seconds"] = {k: float(v) for k, v in list(seconds.items())[:4]}
    details["rows"] = len(y_true)
    return Outcome(ok=True, metrics=scores.metrics, skipped=scores.skipped, details=details)


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _child_entry(conn: Any, spec: dict[str, Any], limits: dict[str, Any], log: str) -> None:
    child_main(conn, spec, limits, log)


class InProcess:
    """Evaluates in the calling process, without isolation: the benchmark's baseline.

    Never used by the worker: it would load untrusted code into it. It follows the
    same split as the sandboxes: its answer is scored by :func:`score_answer`.
    """

    def run(self, spec: Spec, workdir: Path, keep_alive: Callable[[], bool]) -> Outcome:
        return Outcome(ok=True, answer=answer_of(spec))
