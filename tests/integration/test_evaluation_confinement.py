"""Hostile artifacts against the strict level, on SQLite and PostgreSQL.

Each artifact is a pickle whose loading runs a probe in the evaluation child: the
probe tries one escape and *raises* with what it got (``PROBE GOT: …``) or how it
was stopped (``PROBE DENIED: …``), so the job's error shows what the model could
reach. The worker is the real one with the real bubblewrap sandbox; after the
hostile runs an honest run on the same worker must be evaluated truthfully.
"""

from __future__ import annotations

import os
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sklearn.ensemble import RandomForestClassifier

from modelreg.evaluation.confined import Confined
from modelreg.evaluation.worker import Worker
from tests.integration.conftest import ADMIN_TOKEN, Api, put_policy
from tests.integration.test_evaluation_jobs import (
    Split,
    classification_expectations,
    dumped,
    job_of,
    register,
    setup_model,
    upload_dataset,
    verified_values,
)
from tests.integration.test_evaluation_jobs import wine as wine
from tests.integration.test_evaluation_jobs import worker as worker

LABEL = "LBL7391"  # in every label of the test set; nowhere in its features


class _Eval:
    """Pickles as ``eval(expr)``: nothing of this class is in the pickle."""

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (eval, (self.expr,))


def probe(action: str) -> bytes:
    """An artifact that runs ``action`` (statements setting ``got``) and raises the outcome."""
    source = (
        "try:\n"
        + textwrap.indent(textwrap.dedent(action).strip(), "    ")
        + "\n    outcome = 'GOT: ' + repr(got)[:300]\n"
        "except BaseException as exc:\n"
        "    outcome = 'DENIED: ' + type(exc).__name__\n"
        "raise RuntimeError('PROBE ' + outcome)\n"
    )
    return pickle.dumps(_Eval(f"exec(compile({source!r}, 'probe', 'exec'), {{}})"))


def runs(source: str) -> bytes:
    """An artifact that runs the statements ``source`` at load time."""
    code = textwrap.dedent(source).strip() + "\n"
    return pickle.dumps(_Eval(f"exec(compile({code!r}, 'runs', 'exec'), {{}})"))


def model(expr: str) -> bytes:
    """An artifact whose "model" is ``expr`` (evaluated at load time in the child)."""
    return pickle.dumps(_Eval(expr))


@pytest.fixture
def labelled(wine: Split) -> Split:
    """Wine with labels that are strings no feature contains."""
    return Split(
        wine.X_train,
        wine.X_test,
        wine.y_train.map(lambda v: f"{LABEL}-{v}"),
        wine.y_test.map(lambda v: f"{LABEL}-{v}"),
    )


def prepare(api: Api, split: Split) -> None:
    setup_model(api)
    upload_dataset(api, "wine-holdout", split.csv())
    put_policy(api, "INT", "AImodel", dataset="wine-holdout")


def honest_run_is_evaluated(api: Api, worker: Worker, split: Split) -> None:
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    forest.fit(split.X_train, split.y_train)
    good = register(api, dumped(forest), version="1.0")
    worker.run(until_idle=True)
    job = job_of(api, good["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["isolation"] == "strict"
    expected = classification_expectations(forest, split)
    got = verified_values(api, good["id"])
    assert set(got) == set(expected)
    assert all(abs(got[k] - expected[k]) <= 1e-12 for k in expected)
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200


def sandbox_processes(worker: Worker) -> list[int]:
    executor = worker.executor
    assert isinstance(executor, Confined) and executor._host is not None
    found: set[int] = set()
    for procs in executor._host.cgroup.procs:
        found |= {int(p) for p in Path(procs).read_text().split()}
    return sorted(found)


def test_a_hostile_model_reads_and_writes_nothing_of_the_service_and_reaches_no_network(
    app: Flask, api: Api, labelled: Split, worker: Worker, database_url: str, tmp_path: Path
) -> None:
    prepare(api, labelled)
    settings = app.extensions["modelreg"].settings
    store = settings.resolved_artifact_root
    database_file = database_url.removeprefix("sqlite:///") if "sqlite" in database_url else ""
    database_file = database_file or str(tmp_path / "modelreg.db")
    secrets = [ADMIN_TOKEN, str(store), "MODELREG_", "postgres"]
    probes = {
        "read the database file": f"got = open({database_file!r}, 'rb').read(100)",
        "write the database file": f"got = open({database_file!r}, 'ab').write(b'x')",
        "list the artifact store": f"got = __import__('os').listdir({str(store)!r})",
        "write into the store": f"got = open({str(store / 'planted')!r}, 'wb').write(b'x')",
        "read the worker's environment": f"got = open('/proc/{os.getpid()}/environ').read()",
        "read init's environment": "got = open('/proc/1/environ').read()\nassert 'MODELREG' in got",
        "own environment": "got = dict(__import__('os').environ)\nassert 'MODELREG_' in str(got)",
        "find the job's labels": (
            "import glob\ngot = glob.glob('/tmp/modelreg-job-*') + glob.glob('/tmp/*/dataset')\n"
            "assert got"
        ),
        "connect to PostgreSQL": (
            "import socket\ngot = socket.create_connection(('127.0.0.1', 5432), timeout=2)"
        ),
        "connect to the outside": (
            "import socket\ngot = socket.create_connection(('1.1.1.1', 53), timeout=2)"
        ),
        "signal the worker": f"got = __import__('os').kill({os.getpid()}, 0)",
        "write outside its scratch": "got = open('/usr/lib/planted', 'w')",
        "write under the root": "got = open('/planted', 'w')",
    }
    registered = {
        name: register(api, probe(code), filename=f"p{i}.pkl")
        for i, (name, code) in enumerate(probes.items())
    }
    worker.run(until_idle=True)

    for name, run in registered.items():
        job = job_of(api, run["id"])
        assert job["state"] == "failed", (name, job)
        assert "PROBE DENIED" in job["error"], (name, job["error"])
        assert not any(secret in job["error"] for secret in secrets), (name, job["error"])
        assert verified_values(api, run["id"]) == {}
    assert not (store / "planted").exists()
    honest_run_is_evaluated(api, worker, labelled)


def test_labels_never_reach_the_model_and_its_own_scoring_cannot_change_its_score(
    api: Api, labelled: Split, worker: Worker
) -> None:
    prepare(api, labelled)
    # Everything the child's memory holds, and every frame above the model's loading.
    hunt = register(
        api,
        probe(
            """
            import gc, re, sys
            # The pattern is assembled here so that the probe's own source never matches.
            label = re.compile('LBL' + '7391' + r'-\\d')
            seen = []
            frame = sys._getframe()
            while frame is not None:
                seen.append(repr(frame.f_locals))
                frame = frame.f_back
            for obj in gc.get_objects():
                if obj is seen:
                    continue
                try:
                    seen.append(repr(obj)[:10000])
                except Exception:
                    pass
            found = [s for s in seen if label.search(s)]
            assert found
            got = found[0][:200]
            """
        ),
        filename="hunt.pkl",
    )
    # Scores itself perfect in its own process: patched metrics, then a constant model.
    constant = f"{LABEL}-0"
    cheat = register(
        api,
        model(
            "[setattr(__import__('sklearn.metrics', fromlist=['m']), name, lambda *a, **k: 1.0)"
            " for name in ('accuracy_score', 'f1_score', 'precision_score', 'recall_score')]"
            " and None or __import__('sklearn.dummy', fromlist=['d']).DummyClassifier("
            f"strategy='constant', constant={constant!r}).fit([[0]], [{constant!r}])"
        ),
        filename="cheat.pkl",
        version="1.0",
    )
    worker.run(until_idle=True)

    job = job_of(api, hunt["id"])
    assert job["state"] == "failed" and "PROBE DENIED: AssertionError" in job["error"], job
    assert job_of(api, cheat["id"])["state"] == "succeeded"
    truth = float((labelled.y_test == constant).mean())
    assert verified_values(api, cheat["id"])["accuracy"] == pytest.approx(truth, abs=1e-12)
    assert truth < 0.5


def test_a_forged_result_or_malformed_predictions_fail_the_evaluation_with_a_clear_error(
    api: Api, labelled: Split, worker: Worker
) -> None:
    prepare(api, labelled)
    rows = len(labelled.y_test)
    classes = sorted(set(labelled.y_test))
    forged = b'{"ok":true,"metrics":{"f1":1.0},"skipped":{},"rows":999999}'
    cases = {
        # The old result format, on the answer pipe and on every other descriptor.
        "forged result": (
            runs(
                f"""
                import os
                for fd in range(64):
                    try:
                        os.write(fd, {forged!r})
                    except OSError:
                        pass
                os._exit(0)
                """
            ),
            "unreadable result",
        ),
        "wrong length": (
            model("type('M', (), {'predict': lambda self, X: __import__('numpy').zeros(3)})()"),
            f"returned 3 prediction(s) of shape (3,) for {rows} row(s)",
        ),
        "object array": (
            model(
                "type('M', (), {'predict': lambda self, X: __import__('numpy').array("
                "[object()] * len(X), dtype=object)})()"
            ),
            "predictions are not usable",
        ),
        "NaN probabilities": (
            model(
                "type('M', (), {'classes_': " + repr(classes) + ","
                " 'predict': lambda self, X: __import__('numpy').array(["
                + repr(classes[0])
                + "] * len(X)),"
                " 'predict_proba': lambda self, X: __import__('numpy').full((len(X), "
                + str(len(classes))
                + "), float('nan'))})()"
            ),
            "probabilities that are not finite",
        ),
    }
    registered = {
        name: register(api, artifact, filename=f"m{i}.pkl")
        for i, (name, (artifact, _)) in enumerate(cases.items())
    }
    worker.run(until_idle=True)
    for name, (_, message) in cases.items():
        job = job_of(api, registered[name]["id"])
        assert job["state"] == "failed", (name, job)
        assert message in job["error"], (name, job["error"])
        assert verified_values(api, registered[name]["id"]) == {}
    honest_run_is_evaluated(api, worker, labelled)


def test_processes_scratch_and_memory_of_a_hostile_model_are_bounded_and_cleaned_up(
    api: Api, labelled: Split, worker: Worker
) -> None:
    prepare(api, labelled)
    worker.executor.warm()  # type: ignore[attr-defined]
    before = sandbox_processes(worker)
    probes = {
        # A daemon: double fork, new session, sleeps; the job ends with it still there.
        "daemon": (
            """
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    try:
                        time.sleep(600)
                    finally:
                        os._exit(0)
                os._exit(0)
            time.sleep(0.2)
            got = 'a daemon sleeps'
            """,
            "PROBE GOT",
        ),
        "fill the scratch": (
            """
            chunk = b'x' * (1 << 20)
            for place in ('/tmp', '/dev/shm'):
                for i in range(1000):
                    with open(f'{place}/fill-{i}', 'wb') as fh:
                        fh.write(chunk)
            got = 'filled 2000 MiB'
            """,
            "PROBE DENIED: OSError",
        ),
        "fork bomb": (
            """
            import os, time
            for i in range(1000):
                if os.fork() == 0:
                    try:
                        time.sleep(600)
                    finally:
                        os._exit(0)
            got = '1000 processes'
            """,
            "PROBE DENIED: BlockingIOError",
        ),
        "memory across processes": (
            """
            import os, time
            children = []
            for i in range(4):
                pid = os.fork()
                if pid == 0:
                    try:
                        block = b'x' * (300 << 20)
                        time.sleep(1)
                    finally:
                        os._exit(0)
                children.append(pid)
            statuses = [os.waitpid(pid, 0)[1] for pid in children]
            assert all(os.waitstatus_to_exitcode(s) == 0 for s in statuses)
            got = '1200 MiB in four processes'
            """,
            "PROBE DENIED",
        ),
        "kill the host": ("import os\ngot = os.kill(os.getppid(), 9)", "sandbox ended"),
    }
    for i, (name, (code, message)) in enumerate(probes.items()):
        run = register(api, probe(code), filename=f"p{i}.pkl")
        worker.run(until_idle=True)
        job = job_of(api, run["id"])
        assert job["state"] == "failed", (name, job)
        assert message in job["error"] or "memory limit" in job["error"], (name, job["error"])
        if name != "kill the host":  # the same host goes on, with nothing left behind
            assert sandbox_processes(worker) == before, name
    honest_run_is_evaluated(api, worker, labelled)
