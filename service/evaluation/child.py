"""What runs where a model is loaded: read the test set, load the model, score it.

:func:`evaluate` is the whole evaluation as a plain function (the benchmark's
in-process baseline calls it directly). :func:`main` is the entry point of the
sandbox's child process: it applies the limits, hides the worker's settings,
sends the result back as JSON (never pickle: the child runs untrusted code) and
ends without running exit handlers that the model's code may have installed.

This module is preloaded by the sandbox's fork server, so the scientific stack
is imported once, not once per job.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Preloaded for every job: importing them costs more than a small evaluation.
import joblib
import numpy  # noqa: F401
import pandas  # noqa: F401
import sklearn.ensemble
import sklearn.linear_model
import sklearn.metrics
import sklearn.pipeline
import sklearn.preprocessing
import sklearn.tree  # noqa: F401

from service.dataset_content import load_xy
from service.evaluation.metrics import score

# Every child re-runs the worker's main module (multiprocessing's rule). When that is
# `python -m service.cli`, preloaded here, runpy warns that it is already imported:
# true, and harmless. Children inherit this filter from the fork server.
warnings.filterwarnings(
    "ignore", message=r".*found in sys\.modules after import of package", category=RuntimeWarning
)

LOADABLE = ("joblib", "pickle", "skops")
# The child's exit status when it could not even send its result (memory exhausted).
UNREPORTED_EXIT = 113


class ModelRejected(Exception):
    """An artifact that is refused before any of its code runs."""


@dataclass(frozen=True)
class Spec:
    """One evaluation: where the verified copies of artifact and test set are."""

    artifact: str
    artifact_format: str
    dataset: str
    dataset_format: str
    target: str
    task: str
    # Types beyond skops' defaults that an operator accepts in .skops artifacts.
    skops_trusted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpu_seconds: int
    output_bytes: int = 16 * 1024 * 1024


def load_model(path: Path, fmt: str, skops_trusted: tuple[str, ...] = ()) -> Any:
    """Load an artifact. ``.skops`` files pass skops' trusted-type check first.

    A skops file is refused, before anything in it is constructed, when it holds a
    type that is neither trusted by skops nor listed in ``skops_trusted``.
    """
    if fmt == "skops":
        import skops.io as sio

        untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(skops_trusted))
        if untrusted:
            raise ModelRejected(
                "the skops artifact contains types that are not trusted: "
                + ", ".join(untrusted[:20])
                + " (MODELREG_SKOPS_TRUSTED_TYPES lists the extra types to accept)"
            )
        return sio.load(path, trusted=list(skops_trusted))
    if fmt not in LOADABLE:
        raise ModelRejected(
            f"artifacts of format {fmt!r} cannot be evaluated; use one of {', '.join(LOADABLE)}"
        )
    return joblib.load(path)


def evaluate(spec: Spec) -> dict[str, Any]:
    """Score the model on the test set: ``{metrics, skipped, rows, seconds}``."""
    started = time.perf_counter()
    X, y = load_xy(Path(spec.dataset), spec.dataset_format, spec.target)
    model = load_model(Path(spec.artifact), spec.artifact_format, tuple(spec.skops_trusted))
    loaded = time.perf_counter()
    scores = score(spec.task, model, X, y)
    done = time.perf_counter()
    return {
        "metrics": scores.metrics,
        "skipped": scores.skipped,
        "rows": len(y),
        "seconds": {"load": round(loaded - started, 6), "score": round(done - loaded, 6)},
    }


def _apply_limits(limits: Limits) -> None:
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # SIGXCPU at the soft limit, SIGKILL a second later if it is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))


def main(conn: Any, spec_fields: dict[str, Any], limits_fields: dict[str, Any], log: str) -> None:
    """The sandboxed child: never returns."""
    # Its own process group, so that the worker can kill whatever the model spawns.
    os.setsid()
    limits = Limits(**limits_fields)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for key in [k for k in os.environ if k.startswith("MODELREG_")]:
        del os.environ[key]
    try:
        _apply_limits(limits)
        payload: dict[str, Any] = {"ok": True, **evaluate(Spec(**spec_fields))}
    except MemoryError:
        payload = {"ok": False, "kind": "memory", "error": "MemoryError"}
    except ModelRejected as exc:
        payload = {"ok": False, "kind": "rejected", "error": str(exc)}
    except BaseException as exc:  # the model's code may raise anything, SystemExit included
        tail = "".join(traceback.format_exception(exc)[-3:])
        payload = {"ok": False, "kind": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
        payload["traceback"] = tail[-4000:]
    try:
        conn.send_bytes(json.dumps(payload, default=str).encode())
    except BaseException:  # the memory limit can bite here too; the exit code tells then
        os._exit(UNREPORTED_EXIT)
    sys.stdout.flush()
    os._exit(0)


def spec_dict(spec: Spec) -> dict[str, Any]:
    return asdict(spec)
