"""``modelreg demo``: the wine tutorial against a registry, in one command.

Without ``--url`` it starts a temporary embedded registry of its own (``modelreg
serve --insecure-no-auth`` on a free loopback port, SQLite in a temporary directory,
with its evaluation worker) and stops and removes it at the end. With ``--url`` it
registers into that registry: a model that already exists there is refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from modelreg.cli.common import (
    CliError,
    api_errors,
    champion_line,
    table,
    token_option,
)
from modelreg.cli.envs import explain_table
from modelreg.cli.server_extra import ServerCommand
from modelreg.client import NotFound, Registry, Unauthenticated
from modelreg.client.resources import Run

SPLIT_SEED = 42
# (n_estimators, max_features) of each retrain of each version of the model's code.
RETRAINS: dict[str, list[tuple[int, float | str]]] = {
    "1.0": [(1, 0.1), (1, 0.5), (100, 0.5)],
    "2.0": [(20, "sqrt"), (200, "sqrt")],
}
POLICIES = {
    "PROD": ("<=1.0", ["Production"], "production"),
    "INT": ("<=2.0", ["Staging", "Production"], "integration"),
}
READY_TIMEOUT_S = 30.0
# A registry of one's own to run the demo into, as the end of a temporary one suggests:
# loopback and port given, so MODELREG_HOST or MODELREG_PORT cannot move it elsewhere.
KEEP_URL = "http://127.0.0.1:5000"
KEEP_SERVE = ["modelreg", "serve", "--insecure-no-auth", "--host", "127.0.0.1", "--port", "5000"]


@click.command(
    cls=ServerCommand,  # scikit-learn, and an embedded `modelreg serve` without --url
    short_help="The wine tutorial in one command: INT and PROD.",
)
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="a running registry (default: a temporary embedded one; MODELREG_URL "
    "is not read, so the demo never writes to a registry by accident)",
)
@token_option
@click.option(
    "--model",
    default="AImodel",
    show_default=True,
    help="the model to register (refused if it exists)",
)
@click.option("--dataset", default="wine-holdout", show_default=True)
@click.option(
    "--reported", is_flag=True, help="policies count the reported F1: no evaluation worker needed"
)
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="seconds to wait for the verified F1 of every run",
)
def demo(
    url: str | None, token: str | None, model: str, dataset: str, reported: bool, timeout: float
) -> None:
    """The wine tutorial: RandomForest retrains on wine, AImodel 1.0 and 2.0,
    PROD taking <=1.0 in Production and INT <=2.0 in Staging or Production, and the
    champion each one serves, explained.

    The service scores every run itself on the held-out set (verified F1); the
    policies count only those values unless --reported.

    With --url, it ends with commands to try on that registry, each runnable as
    printed (with --url, and --token when it was given as an option). Without, it
    ends with how to serve a registry of your own to run it into.
    """
    from_command_line = (
        click.get_current_context().get_parameter_source("token") == ParameterSource.COMMANDLINE
    )
    with tempfile.TemporaryDirectory(prefix="modelreg-demo-") as tmp, api_errors():
        work = Path(tmp)
        if url:
            reg = Registry(url, token)
            walkthrough(reg, work, model, dataset, reported, timeout, url)
            needs_token = token is not None and _asks_for_tokens(url, model)
            note = " (with MODELREG_TOKEN set, as for this demo)"
            click.echo(f"\nNext, try{note if needs_token and not from_command_line else ''}:")
            repeat = token if needs_token and from_command_line else None
            for line in next_commands(model, url, repeat):
                click.echo(f"   {line}")
            return
        with embedded_registry(work) as local:
            click.echo(f"modelreg demo on a temporary embedded registry at {local}\n")
            walkthrough(Registry(local), work, model, dataset, reported, timeout, None)
        click.echo(
            "\nThis registry is removed now. To keep one, serve it in a terminal of its own "
            "(no tokens, loopback only; data in ./modelreg-data):"
        )
        click.echo(f"   {shlex.join(KEEP_SERVE)}")
        click.echo("and run the demo against it from another:")
        click.echo(f"   {shlex.join(['modelreg', 'demo', '--url', KEEP_URL])}")


def next_commands(model: str, url: str, token: str | None) -> list[str]:
    """What to try on the registry the demo wrote into: each line runs as printed.

    ``token``: to repeat, when the registry asks for one and it was given on the demo's
    command line (one taken from ``MODELREG_TOKEN`` is read from there again).

    >>> for line in next_commands("AImodel", "http://reg:5000", None): print(line)
    modelreg runs list AImodel --url http://reg:5000
    modelreg champion PROD AImodel --explain --url http://reg:5000
    modelreg policy plan PROD AImodel --versions '<=2.0' --url http://reg:5000
    """
    auth = ["--url", url, *(["--token", token] if token else [])]
    return [
        shlex.join(["modelreg", *args, *auth])
        for args in (
            ["runs", "list", model],
            ["champion", "PROD", model, "--explain"],
            ["policy", "plan", "PROD", model, "--versions", "<=2.0"],
        )
    ]


def _asks_for_tokens(url: str, model: str) -> bool:
    """Whether the registry refuses a caller without a token (one serving with
    --insecure-no-auth does not: the commands to try then need none)."""
    try:
        Registry(url).model(model)
    except Unauthenticated:
        return True
    return False


def walkthrough(
    reg: Registry,
    work: Path,
    model: str,
    dataset: str,
    reported: bool,
    timeout: float,
    remote: str | None,
) -> None:
    import joblib  # the scientific stack, for this command only
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    _refuse_existing(reg, model, remote)
    x, y = load_wine(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.5, stratify=y, random_state=SPLIT_SEED
    )
    holdout = work / f"{dataset}.csv"
    holdout.write_bytes(_csv(x_test, y_test))
    _refuse_other_content(reg, dataset, holdout)
    description = f"load_wine, stratified 50% held out, random_state={SPLIT_SEED}"
    if reported:
        # By digest only: nothing for the service to score, so nothing to wait for (a
        # revision with content would hold every champion until its runs are scored).
        digest = hashlib.sha256(holdout.read_bytes()).hexdigest()
        rev = reg.register_dataset(dataset, digest, description)
        how = "registered by its digest only: the F1 that CI reports is what counts"
    else:
        rev = reg.upload_dataset(
            dataset,
            holdout,
            target="target",
            task="classification",
            progress=False,
            description=description,
        )
        how = f"{rev.row_count} rows, uploaded with its content so the service can score runs"
    click.echo(f"1. The external test set: wine, half held out → {rev.label} ({how})")

    runs: list[tuple[Run, dict[str, Any], float]] = []
    for version, retrains in RETRAINS.items():
        for n_estimators, max_features in retrains:
            params = {"n_estimators": n_estimators, "max_features": max_features}
            forest = RandomForestClassifier(**params, random_state=0).fit(x_train, y_train)
            f1 = float(f1_score(y_test, forest.predict(x_test), average="weighted"))
            path = work / f"rf-{version}-{n_estimators}-{max_features}.joblib"
            joblib.dump(forest, path)
            run = reg.register_run(
                model,
                version,
                path,
                params={**params, "random_state": 0},
                tags={"estimator": "RandomForestClassifier"},
                source={"pipeline": "modelreg demo"},
                metrics={"f1": f1},
                dataset=rev.label,
                progress=False,
            )
            runs.append((run, params, f1))
    click.echo(f"2. RandomForest retrains, registered as runs of {model} with their F1:")
    click.echo(
        _indent(
            table(
                ["run", "version", "#", "n_estimators", "max_features", "f1 (reported)"],
                [
                    [r.id, r.version, r.number, p["n_estimators"], str(p["max_features"]), f1]
                    for r, p, f1 in runs
                ],
            )
        )
    )

    reg.transition(model, "1.0", "Staging", reason="demo: 1.0 passes CI")
    reg.transition(model, "1.0", "Production", reason="demo: release 1.0")
    reg.transition(model, "2.0", "Staging", reason="demo: 2.0 passes CI")
    click.echo(f"3. Stages: {model} 1.0 → Staging → Production; {model} 2.0 → Staging")

    known = {e.name.upper() for e in reg.environments()}
    click.echo("4. Policies (version tolerance per environment):")
    for env, (versions, stages, description) in POLICIES.items():
        if env not in known:
            reg.put_environment(env, description)
        reg.put_policy(
            env,
            model,
            versions=versions,
            stages=stages,
            metric="f1",
            dataset=rev.label,
            require_verified=not reported,
            reason=f"demo: {env} takes {versions}",
        )
        counted = "reported or verified" if reported else "verified only"
        click.echo(
            f"   {env:<4}  versions {versions:<6} stages {', '.join(stages):<20} "
            f"f1 on {rev.label} ({counted})"
        )

    if not reported:
        verified = _wait_verified(reg, [r.id for r, _, _ in runs], rev.label, timeout)
        click.echo("5. The service scored every run itself (verified F1, computed in a sandbox):")
        click.echo(
            _indent(
                table(
                    ["run", "version", "#", "f1 (reported)", "f1 (verified)"],
                    [[r.id, r.version, r.number, f1, verified.get(r.id)] for r, _, f1 in runs],
                )
            )
        )
    else:
        click.echo("5. (--reported: the policies count the F1 that CI reported; no worker needed)")

    click.echo("6. Champions:")
    for env in POLICIES:
        try:
            served = champion_line(reg.champion(env, model))
        except NotFound:
            served = "nothing (no eligible run)"
        click.echo(f"   {env:<4} serves {served}")
    click.echo("7. Why PROD serves what it serves:")
    click.echo(_indent(explain_table(reg.explain("PROD", model))))


def _refuse_existing(reg: Registry, model: str, remote: str | None) -> None:
    try:
        reg.model(model)
    except NotFound:
        return
    raise CliError(
        f"model {model} already exists at {remote or reg.url}; the demo registers its own "
        "(pass --model NAME)"
    )


def _refuse_other_content(reg: Registry, dataset: str, holdout: Path) -> None:
    """Never add a revision to someone else's dataset."""
    try:
        found = reg.dataset(dataset)
    except NotFound:
        return
    digest = hashlib.sha256(holdout.read_bytes()).hexdigest()
    if not any(r.sha256 == digest for r in found.revisions):
        raise CliError(f"dataset {dataset} exists with other content (pass --dataset NAME)")


def _csv(x: Any, y: Any) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*x.columns, "target"])
    for features, target in zip(x.itertuples(index=False), y, strict=True):
        writer.writerow([*(repr(float(v)) for v in features), int(target)])
    return out.getvalue().encode()


def _wait_verified(
    reg: Registry, run_ids: list[int], label: str, timeout: float
) -> dict[int, float]:
    """The verified F1 of every run, once the worker has scored them all."""
    deadline = time.monotonic() + timeout
    while True:
        values: dict[int, float] = {}
        for run_id in run_ids:
            for e in reg.run(run_id).evaluations:
                if e.source == "verified" and e.metric == "f1" and e.dataset == label:
                    values[run_id] = e.value
        failed = [j for j in reg.jobs(state="failed") if j.run_id in run_ids]
        if failed:
            raise CliError(f"evaluation job {failed[0].id} failed: {failed[0].error}")
        if len(values) == len(run_ids):
            return values
        if time.monotonic() > deadline:
            raise CliError(
                f"no verified F1 for {len(run_ids) - len(values)} run(s) after {timeout:g} s: "
                "is an evaluation worker running (modelreg worker)? Or pass --reported"
            )
        time.sleep(0.3)


def _indent(text: str) -> str:
    return "\n".join(f"   {line}" for line in text.splitlines())


# -- the temporary embedded registry ---------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def embedded_registry(work: Path) -> Iterator[str]:
    """``modelreg serve --insecure-no-auth`` in ``work``, on a free loopback port.

    No ``MODELREG_*`` setting is passed on: the data is a fresh SQLite database in
    ``work/modelreg-data`` whatever the caller's configuration.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    for attempt in range(3):  # another process may take the port before the server binds it
        port = _free_port()
        log_path = work / f"server-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelreg",
                    "serve",
                    "--insecure-no-auth",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            if _wait_ready(process, url, port, log_path):
                break
        except BaseException:
            _stop(process)
            raise
        _stop(process)
    else:
        raise CliError("the embedded registry could not bind a free port")
    try:
        yield url
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], url: str, port: int, log_path: Path) -> bool:
    """True once it answers ``/readyz``; False if the port was taken; CliError otherwise."""
    registry = Registry(url, timeout=2.0)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        if process.poll() is not None:
            if "in use" in log:
                return False
            tail = " | ".join(log.strip().splitlines()[-3:])
            raise CliError(f"the embedded registry exited with {process.returncode}: {tail}")
        # Ours, not another process that took the port: gunicorn names its own pid.
        if f":{port} ({process.pid})" in log and registry.ready():
            return True
        time.sleep(0.1)
    raise CliError(f"the embedded registry was not ready within {READY_TIMEOUT_S:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (serve stops its worker too), then SIGKILL of its own process group."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)


COMMANDS: list[click.Command] = [demo]
