"""Champion upkeep: every (environment, model) with a policy has a stored champion.

:func:`recompute` runs inside the transaction of any change that can move a
champion (evaluation, transition, policy, pin, unpin, run removal). It asks
``policies.select`` for the decision, rewrites the stored row, and appends a
history row when the champion changes (counted in ``modelreg_champion_changes_total``
once the transaction commits). The caller holds the model's lock
(``registry.lock_model``), so recomputations of one model are serialized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from policies import Candidate, Decision, EvaluationJob, Policy, PolicyError
from policies import select as select_champion
from service.db.models import (
    Champion,
    ChampionChange,
    Evaluation,
    Job,
    ModelVersion,
    Pin,
    PolicyRow,
    RegisteredModel,
    Run,
    utcnow,
)
from service.errors import ValidationFailed, WouldLeaveNoModel
from service.metrics import note_champion_change


@dataclass(frozen=True)
class Outcome:
    """What a recomputation did to one environment's champion."""

    environment: str
    model: str
    before: int | None
    after: int | None
    reason: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def domain_policy(row: PolicyRow) -> Policy:
    try:
        return Policy(
            versions=row.versions,
            stages=tuple(row.stages),
            metric=row.metric,
            dataset=row.dataset_revision.label,
            direction=row.direction,  # type: ignore[arg-type]
            min_value=row.min_value,
            min_improvement=row.min_improvement,
            allow_prereleases=row.allow_prereleases,
            require_verified=row.require_verified,
            formats=tuple(row.formats or ()),
        )
    except PolicyError as exc:  # stored policies were validated when written
        raise ValidationFailed.field(exc.field, exc.message) from None


def load_candidates(
    session: Session,
    model_id: int,
    policy: Policy,
    dataset_revision_id: int,
    *,
    contenders_only: bool,
    always: Sequence[int] = (),
) -> list[Candidate]:
    """Runs of a model with their values for the policy's metric and dataset revision.

    With ``contenders_only`` the query skips runs that could never be eligible
    (wrong stage, a format the policy does not allow, or no value at all), except
    the runs named in ``always`` (incumbent and pin): the decision is the same, the
    work much smaller. Each candidate carries its latest evaluation job on the
    revision (cancelled ones aside): a failed one excludes it.
    """

    def value_of(source: str) -> Any:
        # A correlated lookup on the unique (run, revision, metric, source) index:
        # its cost per run is fixed, whatever the planner believes about table
        # sizes (outer joins went quadratic on freshly loaded, unanalyzed tables).
        return (
            select(Evaluation.value)
            .where(
                Evaluation.run_id == Run.id,
                Evaluation.dataset_revision_id == dataset_revision_id,
                Evaluation.metric == policy.metric,
                Evaluation.source == source,
            )
            .scalar_subquery()
        )

    reported, verified = value_of("reported"), value_of("verified")
    # The latest job, through the (run, revision) index; joined by its primary key.
    latest_job = (
        select(func.max(Job.id))
        .where(
            Job.run_id == Run.id,
            Job.dataset_revision_id == dataset_revision_id,
            Job.state != "cancelled",
        )
        .scalar_subquery()
    )
    job = aliased(Job)
    query = (
        select(
            Run.id,
            ModelVersion.version,
            Run.number,
            ModelVersion.stage,
            reported,
            verified,
            Run.artifact_format,
            job.id,
            job.state,
            job.error,
        )
        .join(ModelVersion, Run.version_id == ModelVersion.id)
        .outerjoin(job, job.id == latest_job)
        .where(ModelVersion.model_id == model_id)
    )
    if contenders_only:
        contender = and_(
            ModelVersion.stage.in_(policy.stages),
            or_(reported.is_not(None), verified.is_not(None)),
        )
        query = query.where(or_(contender, Run.id.in_(list(always))) if always else contender)
    return [
        Candidate(
            run_id=r[0],
            version=r[1],
            run_number=r[2],
            stage=r[3],
            reported=r[4],
            verified=r[5],
            artifact_format=r[6],
            job=None if r[7] is None else EvaluationJob(r[7], r[8], first_line(r[9])),
        )
        for r in session.execute(query)
    ]


def first_line(error: str | None, limit: int = 200) -> str | None:
    """The first non-empty line of a job's error, at most ``limit`` characters.

    >>> first_line("Traceback (most recent call last):\\n  ...\\nValueError: x")
    'Traceback (most recent call last):'
    >>> first_line(None) is None, first_line("\\n  \\n") is None
    (True, True)
    """
    if not error:
        return None
    line = next((ln.strip() for ln in error.splitlines() if ln.strip()), "")
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pin_of(session: Session, env_id: int, model_id: int) -> Pin | None:
    return session.scalar(select(Pin).where(Pin.environment_id == env_id, Pin.model_id == model_id))


def champion_row(session: Session, env_id: int, model_id: int) -> Champion | None:
    return session.scalar(
        select(Champion).where(Champion.environment_id == env_id, Champion.model_id == model_id)
    )


def decide(
    session: Session,
    row: PolicyRow,
    policy: Policy,
    *,
    contenders_only: bool = True,
    removing: int | None = None,
) -> Decision:
    """The decision for one policy row, against the stored incumbent and pin.

    ``removing`` names a run that is about to be deleted: it no longer exists
    for the decision, so neither ranking nor a pin can keep it.
    """
    current = champion_row(session, row.environment_id, row.model_id)
    incumbent = current.run_id if current else None
    pin = pin_of(session, row.environment_id, row.model_id)
    pinned = pin.run_id if pin else None
    candidates = load_candidates(
        session,
        row.model_id,
        policy,
        row.dataset_revision_id,
        contenders_only=contenders_only,
        always=[i for i in (incumbent, pinned) if i is not None],
    )
    if removing is not None:
        candidates = [c for c in candidates if c.run_id != removing]
    return select_champion(policy, candidates, incumbent=incumbent, pin=pinned)


def _store(
    session: Session,
    row: PolicyRow,
    policy: Policy,
    decision: Decision,
    *,
    trigger: str,
    detail: str,
    actor: str,
) -> Outcome:
    chosen = decision.champion_assessment
    run = session.get(Run, decision.champion) if decision.champion is not None else None
    fields: dict[str, Any] = {
        "run_id": decision.champion,
        "version": chosen.candidate.version if chosen else None,
        "stage": chosen.candidate.stage if chosen else None,
        "run_number": chosen.candidate.run_number if chosen else None,
        "value": chosen.value if chosen else None,
        "metric": policy.metric,
        "dataset": policy.dataset,
        "artifact_sha256": run.artifact_sha256 if run else None,
        "artifact_size": run.artifact_size if run else None,
        "artifact_format": run.artifact_format if run else None,
        "allowed_formats": list(policy.formats),
        "reason": str(decision.reason),
        "policy_revision": row.revision,
    }
    champion = champion_row(session, row.environment_id, row.model_id)
    if champion is None:
        champion = Champion(
            environment_id=row.environment_id,
            model_id=row.model_id,
            environment_key=row.environment.name_key,
            model_key=row.model.name_key,
            environment=row.environment.name,
            model=row.model.name,
            run_id=None,
        )
        session.add(champion)
    before = champion.run_id
    if before != decision.champion:
        fields["selected_at"] = utcnow() if decision.champion is not None else None
        session.add(
            ChampionChange(
                environment_id=row.environment_id,
                model_id=row.model_id,
                from_run_id=before,
                to_run_id=decision.champion,
                reason=str(decision.reason),
                trigger=trigger,
                detail=detail,
                actor=actor,
                policy_revision=row.revision,
            )
        )
        note_champion_change(session, row.environment.name, row.model.name)
    if any(getattr(champion, k) != v for k, v in fields.items()):
        for key, value in fields.items():
            setattr(champion, key, value)
        champion.updated_at = utcnow()
    session.flush()
    return Outcome(
        row.environment.name, row.model.name, before, decision.champion, str(decision.reason)
    )


def recompute(
    session: Session,
    model: RegisteredModel,
    *,
    trigger: str,
    detail: str = "",
    actor: str,
    force: bool = True,
    environment_id: int | None = None,
    removing: int | None = None,
) -> list[Outcome]:
    """Recompute and store the champions of ``model`` (one environment, or all).

    With ``force=False`` a change that would leave an environment that has a
    champion with none raises :class:`WouldLeaveNoModel` before anything is
    stored; the caller's transaction then rolls back whatever led here.
    """
    query = select(PolicyRow).where(PolicyRow.model_id == model.id)
    if environment_id is not None:
        query = query.where(PolicyRow.environment_id == environment_id)
    rows = session.scalars(query.order_by(PolicyRow.id)).all()
    planned = []
    for row in rows:
        policy = domain_policy(row)
        planned.append((row, policy, decide(session, row, policy, removing=removing)))
    if not force:
        stranded = []
        for row, _, decision in planned:
            current = champion_row(session, row.environment_id, row.model_id)
            if current is not None and current.run_id is not None and decision.champion is None:
                stranded.append(row.environment.name)
        if stranded:
            raise WouldLeaveNoModel(
                f"this change would leave {', '.join(stranded)} with no {model.name} to serve; "
                "send force: true to do it anyway",
                {"environments": stranded, "model": model.name},
            )
    return [
        _store(session, row, policy, decision, trigger=trigger, detail=detail, actor=actor)
        for row, policy, decision in planned
    ]
