"""Metric values of runs on dataset revisions. Immutable once written."""

from __future__ import annotations

import math
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelreg.changes.unit import Change
from modelreg.db.models import Evaluation, Run
from modelreg.errors import AlreadyExists, NotFound, ValidationFailed
from modelreg.evaluation import datasets
from modelreg.names import NAME_RE
from modelreg.roles import Caller


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found", {"run_id": run_id})
    return run


def add(
    session: Session,
    run: Run,
    dataset: str,
    metrics: Mapping[str, float],
    *,
    source: str = "reported",
    field: str = "dataset",
) -> list[Evaluation]:
    """Add values for one dataset revision; all of them, or none (409 on any clash)."""
    if not metrics:
        raise ValidationFailed.field("metrics", "at least one metric is required")
    bad = {
        name: ["must be a finite number"]
        for name, value in metrics.items()
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    }
    bad.update({name: ["invalid metric name"] for name in metrics if not NAME_RE.fullmatch(name)})
    if bad:
        raise ValidationFailed.fields({"metrics": bad})
    revision = datasets.resolve(session, dataset, field)
    clash = session.scalars(
        select(Evaluation.metric).where(
            Evaluation.run_id == run.id,
            Evaluation.dataset_revision_id == revision.id,
            Evaluation.source == source,
            Evaluation.metric.in_(list(metrics)),
        )
    ).all()
    if clash:
        raise AlreadyExists(
            f"run {run.id} already has {source} {', '.join(sorted(clash))} on {revision.label}",
            {"run_id": run.id, "dataset": revision.label, "metrics": sorted(clash)},
        )
    rows = [
        Evaluation(
            run_id=run.id,
            dataset_revision=revision,
            metric=name,
            value=float(value),
            source=source,
        )
        for name, value in metrics.items()
    ]
    session.add_all(rows)
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists(
            f"run {run.id} already has one of these metrics on {revision.label}",
            {"run_id": run.id, "dataset": revision.label},
        ) from None
    return rows


def target(run_id: int, dataset_label: str) -> str:
    """Evaluations are audited under their run: ``runs/12/evaluations/wine-holdout@2``."""
    return f"runs/{run_id}/evaluations/{dataset_label}"


def record(
    session: Session, run_id: int, dataset: str, metrics: Mapping[str, float], *, caller: Caller
) -> list[Evaluation]:
    """Record reported metrics of a run and move the champions they can move."""
    model = get_run(session, run_id).model_version.model
    with Change(session, caller, "evaluation.create") as change:
        change.lock(model)
        run = get_run(session, run_id)  # it may have been removed while we waited: 404
        rows = add(session, run, dataset, metrics)
        label = rows[0].dataset_revision.label
        change.recompute(
            model, trigger="evaluation", detail=f"run {run.id} on {label}", changed_run=run.id
        )
        change.record(
            target=target(run.id, label),
            before=None,
            after={
                "run_id": run.id,
                "dataset": label,
                "source": "reported",
                "metrics": {row.metric: row.value for row in rows},
            },
        )
    return rows


def of_run(session: Session, run_id: int) -> list[Evaluation]:
    return list(
        session.scalars(
            select(Evaluation).where(Evaluation.run_id == run_id).order_by(Evaluation.id)
        )
    )
