"""The ``process`` level's child: load the model, predict, send the answer back.

:func:`main` is the entry point of the fork-server sandbox's child process: it
applies the limits, hides the worker's settings, and sends the answer of
:func:`modelreg.evaluation.host.run_untrusted` (a JSON header and ``.npy`` arrays,
never pickle) on a pipe. It sees the feature columns only: the worker keeps the
labels and computes the metrics itself. It ends without running exit handlers
that the model's code may have installed.

This module is preloaded by the sandbox's fork server, so the scientific stack
is imported once, not once per job.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelreg.evaluation.host import (
    UNREPORTED_EXIT,
    Limits,
    ModelRejected,
    load_model,
    run_untrusted,
)
from modelreg.evaluation.host import apply_limits as _apply_limits

__all__ = ["UNREPORTED_EXIT", "Limits", "ModelRejected", "Spec", "load_model", "main"]

# Every child re-runs the worker's main module (multiprocessing's rule). When that is
# `python -m modelreg.cli.main`, preloaded here, runpy warns that it is already imported:
# true, and harmless. Children inherit this filter from the fork server.
warnings.filterwarnings(
    "ignore", message=r".*found in sys\.modules after import of package", category=RuntimeWarning
)


@dataclass(frozen=True)
class Spec:
    """One evaluation's untrusted half: the verified artifact and the features, no labels."""

    artifact: str  # path of the verified copy
    artifact_format: str
    features: str  # path of the feature columns, pickled by the worker
    task: str
    # Types beyond skops' defaults that an operator accepts in .skops artifacts.
    skops_trusted: tuple[str, ...] = ()


def answer_of(spec: Spec) -> bytes:
    """The whole untrusted half in this process (the level's child, and the benchmark)."""
    features = Path(spec.features).read_bytes()
    with Path(spec.artifact).open("rb") as artifact:
        return run_untrusted(
            artifact, spec.artifact_format, features, spec.task, tuple(spec.skops_trusted)
        )


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
        payload = answer_of(Spec(**spec_fields))
    except BaseException:
        os._exit(UNREPORTED_EXIT)
    try:
        conn.send_bytes(payload)
    except BaseException:  # the memory limit can bite here too; the exit code tells then
        os._exit(UNREPORTED_EXIT)
    sys.stdout.flush()
    os._exit(0)


def spec_dict(spec: Spec) -> dict[str, Any]:
    return asdict(spec)
