"""Where the sandbox's time goes: one executor variant, in a fresh process of its own.

    .venv/bin/python bench/evalprobe.py VARIANT JOBS SPEC_JSON...

Used by ``evalbench.py`` (``--no-profile`` skips it). Each variant needs a process
of its own because a process has one fork server, started once with the modules
it preloads. Variants:

- ``inprocess``: ``InProcess().run`` (no isolation), the baseline;
- ``shipped``: ``Sandbox`` exactly as the worker builds it;
- ``warm``: the same ``Sandbox``, its fork server also preloading ``evalwarm``
  (one small evaluation before any fork);
- ``warm-freeze``: ``warm`` plus ``gc.freeze()`` in the fork server.

It prints JSON: the cold first call, then ``Executor.run`` wall time per job (specs
taken in turn), the evaluation's own load + score time, and, for the sandboxes, a
child that does nothing (fork, start-up, exit) and what a fresh child does on its
first evaluation: modules imported, minor page faults.

Like ``evaluate.py``, this file imports nothing at module level: it is the main
script, which every sandboxed child runs again before its job.
"""

from __future__ import annotations

import json
import sys
from typing import Any

VARIANTS = ("inprocess", "shipped", "warm", "warm-freeze")


def probe_child(conn: Any, spec_fields: dict[str, Any]) -> None:
    """Runs in a sandbox-like child: one evaluation, with what it imported and faulted."""
    import resource
    import time

    from modelreg.evaluation.child import Spec, answer_of

    before = set(sys.modules)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    answer_of(Spec(**spec_fields))
    first = time.perf_counter() - started
    faults_first = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    imported = sorted(set(sys.modules) - before)
    started = time.perf_counter()
    answer_of(Spec(**spec_fields))
    second = time.perf_counter() - started
    conn.send(
        {
            "first_ms": first * 1000,
            "second_ms": second * 1000,
            "minor_faults_first": faults_first,
            "modules_imported_first": len(imported),
            "modules": imported[:12],
            "warmed": "evalwarm" in sys.modules,
        }
    )
    conn.close()


def run(variant: str, jobs: int, specs: list[dict[str, Any]]) -> dict[str, Any]:
    import multiprocessing
    import os
    import shutil
    import statistics
    import tempfile
    import time
    from pathlib import Path

    from modelreg.evaluation.answers import decode
    from modelreg.evaluation.child import Spec
    from modelreg.evaluation.sandbox import Executor, InProcess, Sandbox, _preload

    executor: Executor
    if variant == "inprocess":
        executor = InProcess()
    else:
        executor = Sandbox(timeout=300, cpu_seconds=300, memory_mb=4096, renew_every=10)
        if variant.startswith("warm"):
            os.environ["EVALBENCH_GC_FREEZE"] = "1" if variant == "warm-freeze" else "0"
            # The fork server does not apply the sys.path it is handed (CPython 3.11-3.13)
            # and skips a preload it cannot import without a word: give it bench/.
            here = str(Path(__file__).resolve().parent)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (here, os.environ.get("PYTHONPATH")) if p
            )
            multiprocessing.get_context("forkserver").set_forkserver_preload(
                [*_preload(), "evalwarm"]
            )
    workdir = Path(tempfile.mkdtemp(prefix="evalprobe-"))

    def one(spec: dict[str, Any]) -> tuple[float, float]:
        started = time.perf_counter()
        outcome = executor.run(Spec(**spec), workdir, lambda: True)
        wall = time.perf_counter() - started
        if not outcome.ok or outcome.answer is None:
            raise RuntimeError(f"{variant}: {outcome.error} {outcome.details}")
        seconds = decode(outcome.answer).header["seconds"]
        return wall * 1000, (seconds["load"] + seconds["predict"]) * 1000

    try:
        cold, _ = one(specs[0])
        walls, evals = [], []
        for i in range(jobs):
            wall, inner = one(specs[i % len(specs)])
            walls.append(wall)
            evals.append(inner)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out: dict[str, Any] = {
        "variant": variant,
        "cold_ms": cold,
        "executor_ms": walls,
        "evaluation_ms": evals,
        "executor_p50_ms": statistics.median(walls),
        "evaluation_p50_ms": statistics.median(evals),
    }
    if variant != "inprocess":
        ctx = multiprocessing.get_context("forkserver")
        bare = []
        for _ in range(jobs):
            started = time.perf_counter()
            child = ctx.Process(target=os.getpid, daemon=True)
            child.start()
            child.join(30)
            bare.append((time.perf_counter() - started) * 1000)
        out["bare_child_p50_ms"] = statistics.median(bare)
        firsts = []
        for spec in specs:
            receiver, sender = ctx.Pipe(duplex=False)
            child = ctx.Process(target=probe_child, args=(sender, spec), daemon=True)
            child.start()
            sender.close()
            if receiver.poll(60):
                firsts.append(receiver.recv())
            child.join(30)
        out["fresh_child"] = firsts
    return out


def main(argv: list[str]) -> int:
    variant, jobs, specs = argv[0], int(argv[1]), [json.loads(a) for a in argv[2:]]
    if variant not in VARIANTS:
        raise SystemExit(f"variant must be one of {VARIANTS}")
    print(json.dumps(run(variant, jobs, specs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
