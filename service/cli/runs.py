"""``modelreg runs …``, ``register``, ``datasets …``, ``jobs …`` and ``evaluate``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from modelreg.cli.common import (
    Api,
    CliError,
    api_command,
    items,
    pairs,
    parse_metrics,
    parse_pairs,
    short_sha,
    table,
)
from modelreg.cli.registry import outcomes_table
from modelreg.client import NotFound
from modelreg.client.resources import DatasetRevision, Evaluation, Job, Run
from modelreg.client.transport import TerminalProgress

_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


# Metric columns `runs list` shows when not told which (--metric): enough to compare
# retrains at a glance; the service's verified evaluation alone can have a dozen metrics.
DEFAULT_METRIC_COLUMNS = 4


@dataclass(frozen=True)
class MetricColumn:
    """One metric on one dataset revision, as reported by a client or verified by the service."""

    metric: str
    dataset: str
    source: str

    @property
    def header(self) -> str:
        return f"{self.metric} {self.dataset} ({self.source})"


def metric_columns(
    evaluations: Iterable[Evaluation],
    wanted: Sequence[str] = (),
    policies: Sequence[tuple[str, str]] = (),
    limit: int = DEFAULT_METRIC_COLUMNS,
) -> tuple[list[MetricColumn], list[MetricColumn]]:
    """The columns to show, and those left out.

    With ``wanted`` metric names: every column of those metrics, in that order.
    Otherwise the metrics of the model's ``policies`` (metric, dataset) come first,
    then those clients reported, then the service's alone; at most ``limit``
    columns, never splitting a metric's reported and verified values.

    >>> from modelreg.client.resources import Evaluation as E
    >>> found = [E(dataset="w@1", metric=m, value=0.9, source=s)
    ...          for m, s in [("accuracy", "verified"), ("f1", "verified"), ("f1", "reported"),
    ...                       ("recall", "verified"), ("log_loss", "reported")]]
    >>> shown, left = metric_columns(found, policies=[("f1", "w@1")], limit=3)
    >>> [c.header for c in shown]
    ['f1 w@1 (reported)', 'f1 w@1 (verified)', 'log_loss w@1 (reported)']
    >>> [c.header for c in left]
    ['accuracy w@1 (verified)', 'recall w@1 (verified)']
    >>> [c.header for c in metric_columns(found, wanted=["recall", "f1"])[0]]
    ['recall w@1 (verified)', 'f1 w@1 (reported)', 'f1 w@1 (verified)']
    """
    sources: dict[tuple[str, str], set[str]] = {}
    for e in evaluations:
        sources.setdefault((e.metric, e.dataset), set()).add(e.source)
    pairs = list(sources)
    if wanted:
        pairs = [p for p in pairs if p[0] in wanted]
        pairs.sort(key=lambda p: (wanted.index(p[0]), p[1]))
    else:
        named = [m for m, _ in policies]

        def rank(pair: tuple[str, str]) -> tuple[int, int, str, str]:
            if pair in policies:
                return (0, policies.index(pair), *pair)
            if pair[0] in named:
                return (1, named.index(pair[0]), *pair)
            return (2 if "reported" in sources[pair] else 3, 0, *pair)

        pairs.sort(key=rank)
    shown: list[MetricColumn] = []
    left: list[MetricColumn] = []
    for metric, dataset in pairs:
        group = [
            MetricColumn(metric, dataset, source)
            for source in ("reported", "verified")
            if source in sources[(metric, dataset)]
        ]
        fits = wanted or not shown or len(shown) + len(group) <= limit
        (shown if fits and not left else left).extend(group)
    return shown, left


def runs_table(
    runs: Iterable[Run],
    evaluations: dict[int, list[Evaluation]] | None = None,
    columns: Sequence[MetricColumn] = (),
) -> str:
    """The runs of one model, with a column per metric: each run's value, ``-`` where it
    has none."""
    found = evaluations or {}

    def values(run: Run) -> list[float | None]:
        by_column = {
            MetricColumn(e.metric, e.dataset, e.source): e.value for e in found.get(run.id, ())
        }
        return [by_column.get(c) for c in columns]

    return table(
        [
            "id",
            "version",
            "#",
            *(c.header for c in columns),
            "sha256",
            "size",
            "format",
            "params",
            "created",
        ],
        [
            [
                r.id,
                r.version,
                r.number,
                *values(r),
                short_sha(r.sha256),
                r.artifact.get("size"),
                r.artifact.get("format"),
                r.params,
                r.created_at,
            ]
            for r in runs
        ],
    )


def evaluations_table(evaluations: Iterable[Evaluation]) -> str:
    return table(
        ["dataset", "metric", "value", "source", "created"],
        [[e.dataset, e.metric, e.value, e.source, e.created_at] for e in evaluations],
    )


def jobs_table(jobs: Iterable[Job]) -> str:
    return table(
        ["id", "run", "dataset", "state", "trigger", "attempts", "created", "error"],
        [
            [j.id, j.run_id, j.dataset, j.state, j.trigger, j.attempts, j.created_at, j.error]
            for j in jobs
        ],
    )


def _run_text(run: Run) -> str:
    head = pairs(
        [
            ("id", run.id),
            ("model", run.model),
            ("version", run.version),
            ("number", run.number),
            ("stage", run.stage),
            ("sha256", run.sha256),
            ("size", run.artifact.get("size")),
            ("format", run.artifact.get("format")),
            ("params", run.params),
            ("tags", run.tags),
            ("source", run.source),
            ("created", run.created_at),
        ]
    )
    parts = [head]
    if run.evaluations:
        parts.append(evaluations_table(run.evaluations))
    if run.pending_jobs:
        parts.append("pending evaluations:\n" + jobs_table(run.pending_jobs))
    return "\n\n".join(parts)


def _registered(run: Run) -> str:
    pending = f"; {len(run.pending_jobs)} evaluation(s) scheduled" if run.pending_jobs else ""
    return (
        f"run {run.id}: {run.model} {run.version} #{run.number}, "
        f"sha256 {short_sha(run.sha256)}, {run.artifact.get('size')} bytes{pending}"
    )


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """What a new run carries: params, tags, provenance, reported metrics."""
    for option in reversed(
        [
            click.option(
                "--param",
                "params",
                multiple=True,
                metavar="K=V",
                help="a training parameter (repeatable; JSON values: 100, 0.5, true)",
            ),
            click.option("--tag", "tags", multiple=True, metavar="K=V", help="a tag (repeatable)"),
            click.option(
                "--source",
                "sources",
                multiple=True,
                metavar="K=V",
                help="provenance: git commit, pipeline id… (repeatable)",
            ),
            click.option(
                "--metric",
                "metrics",
                multiple=True,
                metavar="NAME=VALUE",
                help="a reported metric on --dataset (repeatable)",
            ),
            click.option(
                "--dataset",
                default=None,
                metavar="NAME[@REV]",
                help="the test set the metrics were measured on",
            ),
            click.option(
                "--format",
                "fmt",
                default=None,
                help="artifact format (default: from the file extension)",
            ),
        ]
    ):
        func = option(func)
    return func


def _run_fields(
    params: tuple[str, ...],
    tags: tuple[str, ...],
    sources: tuple[str, ...],
    metrics: tuple[str, ...],
    dataset: str | None,
) -> dict[str, Any]:
    measured = parse_metrics(metrics)
    if measured and not dataset:
        raise click.UsageError("--metric needs --dataset: the test set it was measured on")
    return {
        "params": parse_pairs(params, "--param"),
        "tags": parse_pairs(tags, "--tag"),
        "source": parse_pairs(sources, "--source"),
        "metrics": measured,
        "dataset": dataset,
    }


@click.group()
def runs() -> None:
    """Runs: the trained instances (retrains) of a version."""


@runs.command("list")
@click.argument("model")
@click.argument("version", required=False)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="show this metric's columns, on every dataset (repeatable; default: the metrics "
    f"of MODEL's policies first, at most {DEFAULT_METRIC_COLUMNS} columns)",
)
@api_command
def runs_list(api: Api, model: str, version: str | None, metrics: tuple[str, ...]) -> None:
    """Runs of VERSION of MODEL (of every version when VERSION is left out), with
    their metrics.

    A metric on a dataset revision is a column, "f1 wine-holdout@1 (reported)" for
    the value a client reported and "(verified)" for the one the service computed
    itself; "-" where a run has none. The metrics the model's policies rank by come
    first; a note on stderr names the columns left out. --json prints the runs as
    the API lists them, without evaluations.
    """
    names = [version] if version else [v.version for v in api.registry.versions(model)]
    found = [run for name in names for run in api.registry.runs(model, name)]

    def render() -> str:
        # The list API carries no evaluations: one request per run, for people only.
        evaluations = {run.id: api.registry.evaluations(run.id) for run in found}
        every = [e for listed in evaluations.values() for e in listed]
        policies = [] if metrics else _policy_metrics(api, model)
        shown, left = metric_columns(every, metrics, policies)
        missing = [m for m in metrics if m not in {e.metric for e in every}]
        if missing:
            click.echo(f"note: no run has a metric named {', '.join(missing)}", err=True)
        if left:
            more = ", ".join(dict.fromkeys(c.metric for c in left))
            click.echo(
                f"note: {len(left)} more metric column(s) ({more}): choose with --metric NAME",
                err=True,
            )
        return runs_table(found, evaluations, shown)

    api.out(items(found), render)


def _policy_metrics(api: Api, model: str) -> list[tuple[str, str]]:
    """(metric, dataset) of MODEL's policy in each environment that has one."""
    found = []
    for env in api.registry.environments():
        try:
            policy = api.registry.policy(env.name, model)
        except NotFound:
            continue
        found.append((policy.metric, policy.dataset))
    return found


@runs.command("show")
@click.argument("run_id", type=int)
@api_command
def runs_show(api: Api, run_id: int) -> None:
    """A run with its evaluations and pending jobs."""
    found = api.registry.run(run_id)
    api.out(found, lambda: _run_text(found))


@runs.command("create")
@click.argument("model")
@click.argument("version")
@click.argument("artifact", type=_FILE)
@run_options
@api_command
def runs_create(
    api: Api, model: str, version: str, artifact: Path, fmt: str | None, **fields: Any
) -> None:
    """Upload ARTIFACT as a new run of an existing VERSION of MODEL."""
    f = _run_fields(**fields)
    evaluations = [{"dataset": f["dataset"], "metrics": f["metrics"]}] if f["metrics"] else []
    created = api.registry.create_run(
        model,
        version,
        artifact,
        params=f["params"],
        tags=f["tags"],
        source=f["source"],
        evaluations=evaluations,
        format=fmt,
    )
    api.out(created, lambda: _registered(created))


@runs.command("delete")
@click.argument("run_id", type=int)
@click.option("--reason", required=True, help="why (kept in the audit trail)")
@click.option("--force", is_flag=True, help="even if an environment is left with no model")
@api_command
def runs_delete(api: Api, run_id: int, reason: str, force: bool) -> None:
    """Remove a run; the champions it held move to their successors."""
    outcomes = api.registry.delete_run(run_id, reason=reason, force=force)
    api.out({"champions": outcomes}, lambda: f"run {run_id} removed\n{outcomes_table(outcomes)}")


@click.command(short_help="Register an artifact as a new run (CI's one command).")
@click.argument("model")
@click.argument("version")
@click.argument("artifact", type=_FILE)
@run_options
@api_command
def register(
    api: Api, model: str, version: str, artifact: Path, fmt: str | None, **fields: Any
) -> None:
    """CI's one command: register ARTIFACT as a new run of MODEL VERSION.

    The model and the version are created when missing. The upload is streamed and
    checked against its sha256, with a progress bar on a terminal.

    \b
    modelreg register AImodel 1.0 rf.joblib --param n_estimators=100 \\
        --metric f1=0.97 --dataset wine-holdout --source git_commit=4f2a…
    """
    f = _run_fields(**fields)
    created = api.registry.register_run(model, version, artifact, format=fmt, **f)
    api.out(created, lambda: _registered(created))


@click.group()
def datasets() -> None:
    """External test sets and their revisions."""


def _revisions_table(revisions: Iterable[DatasetRevision]) -> str:
    return table(
        ["label", "sha256", "content", "task", "target", "rows", "created", "description"],
        [
            [
                r.label,
                short_sha(r.sha256),
                r.has_content,
                r.task,
                r.target,
                r.row_count,
                r.created_at,
                r.description,
            ]
            for r in revisions
        ],
    )


@datasets.command("list")
@api_command
def datasets_list(api: Api) -> None:
    """Datasets with their latest revision."""
    found = api.registry.datasets()

    def render() -> str:
        latest = [max(d.revisions, key=lambda r: r.revision) for d in found if d.revisions]
        return _revisions_table(latest)

    api.out(items(found), render)


@datasets.command("show")
@click.argument("name")
@api_command
def datasets_show(api: Api, name: str) -> None:
    """A dataset's revisions."""
    found = api.registry.dataset(name)
    api.out(found, lambda: _revisions_table(found.revisions))


@datasets.command("register")
@click.argument("name")
@click.argument("sha256")
@click.option("--description", default="")
@api_command
def datasets_register(api: Api, name: str, sha256: str, description: str) -> None:
    """A revision of NAME by its SHA256 only: for metrics reported by clients."""
    rev = api.registry.register_dataset(name, sha256, description)
    api.out(rev, lambda: f"{rev.label} sha256 {short_sha(rev.sha256)} (digest only)")


@datasets.command("upload")
@click.argument("name")
@click.argument("file", type=_FILE)
@click.option("--target", required=True, help="the label column")
@click.option("--task", required=True, type=click.Choice(["classification", "regression"]))
@click.option("--description", default="")
@api_command
def datasets_upload(
    api: Api, name: str, file: Path, target: str, task: str, description: str
) -> None:
    """Upload FILE (CSV, or gzip'd CSV) as a revision of NAME, with its content."""
    rev = api.registry.upload_dataset(name, file, target=target, task=task, description=description)
    api.out(rev, lambda: f"{rev.label} sha256 {short_sha(rev.sha256)}, {rev.row_count} rows")


@click.group()
def jobs() -> None:
    """Server-side evaluation jobs."""


@jobs.command("list")
@click.option(
    "--state",
    type=click.Choice(["pending", "running", "succeeded", "failed", "cancelled"]),
    default=None,
)
@click.option("--run-id", type=int, default=None)
@api_command
def jobs_list(api: Api, state: str | None, run_id: int | None) -> None:
    """Jobs, newest first."""
    found = api.registry.jobs(state=state, run_id=run_id)
    api.out(items(found), lambda: jobs_table(found))


def _job_text(job: Job) -> str:
    result = job.result or {}
    return pairs(
        [
            ("id", job.id),
            ("run", job.run_id),
            ("dataset", job.dataset),
            ("state", job.state),
            ("trigger", job.trigger),
            ("actor", job.actor),
            ("attempts", job.attempts),
            ("metrics", result.get("metrics")),
            ("skipped", result.get("skipped")),
            ("error", job.error),
            ("created", job.created_at),
            ("finished", job.finished_at),
        ]
    )


@jobs.command("show")
@click.argument("job_id", type=int)
@api_command
def jobs_show(api: Api, job_id: int) -> None:
    """One job with its result or error."""
    found = api.registry.job(job_id)
    api.out(found, lambda: _job_text(found))


@click.command()
@click.argument("target", metavar="MODEL | RUN_ID")
@click.argument("dataset_arg", metavar="[DATASET[@REV]]", required=False)
@click.option(
    "--dataset",
    "model_dataset",
    metavar="NAME[@REV]",
    default=None,
    help="score every run of MODEL on this revision (with content)",
)
@click.option(
    "--versions", default=None, metavar="SPEC", help="with --dataset: only these versions"
)
@click.option("--wait", is_flag=True, help="wait for the jobs to end; exit 1 if any of them fails")
@click.option(
    "--timeout", type=float, default=None, help="seconds to wait [300 for a run, 3600 a model]"
)
@api_command
def evaluate(
    api: Api,
    target: str,
    dataset_arg: str | None,
    model_dataset: str | None,
    versions: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Have the service score runs (verified metrics).

    \b
    modelreg evaluate MODEL --dataset NAME[@REV] [--versions SPEC] [--wait]
        every run of MODEL not yet scored on that revision (a new test set)
    modelreg evaluate RUN_ID DATASET[@REV] [--wait]
        one run
    """
    if model_dataset is not None:
        if dataset_arg is not None:
            raise click.UsageError("give the dataset once: MODEL --dataset NAME[@REV]")
        _evaluate_model(api, target, model_dataset, versions, wait, timeout or 3600.0)
        return
    if versions is not None:
        raise click.UsageError("--versions needs --dataset: MODEL --dataset NAME[@REV]")
    if dataset_arg is None or not target.isdigit():
        raise click.UsageError("expected MODEL --dataset NAME[@REV], or RUN_ID DATASET[@REV]")
    job = api.registry.evaluate(int(target), dataset_arg)
    if wait and not job.done:
        job = api.registry.wait_for_job(job.id, timeout=timeout or 300.0)
    api.out(job, lambda: _job_text(job))
    if wait and job.state != "succeeded":
        raise CliError(f"job {job.id} {job.state}: {job.error or 'no result'}")


def _evaluate_model(
    api: Api, model: str, dataset: str, versions: str | None, wait: bool, timeout: float
) -> None:
    queued = api.registry.evaluate_model(model, dataset, versions=versions)
    if not wait:
        api.out(
            queued,
            lambda: (
                f"{queued.jobs} job(s) queued for {queued.model} on {queued.dataset}; "
                f"{queued.already_scored} run(s) already scored or queued"
            ),
        )
        return
    if not api.as_json:
        click.echo(
            f"{queued.jobs} job(s) queued for {queued.model} on {queued.dataset}; "
            f"{queued.already_scored} run(s) already scored or queued"
        )
    waiting = queued.waiting_for
    label = f"evaluating {queued.model} on {queued.dataset}"
    with TerminalProgress(label, unit="jobs") as bar:
        unsuccessful = api.registry.wait_for_jobs(waiting, timeout=timeout, progress=bar)
    failed = [j for j in unsuccessful if j.state == "failed"]
    api.out(
        {**queued.raw, "finished": len(waiting), "failed": [j.raw for j in unsuccessful]},
        lambda: (
            f"{len(waiting)} job(s) finished, {len(failed)} failed"
            + ("\n" + jobs_table(unsuccessful) if unsuccessful else "")
        ),
    )
    if failed:
        raise CliError(f"{len(failed)} of {len(waiting)} evaluation(s) failed")


COMMANDS: list[click.Command] = [runs, register, datasets, jobs, evaluate]
