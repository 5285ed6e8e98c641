"""Champion upkeep: every (environment, model) with a policy has a stored champion.

:func:`recompute` runs inside the transaction of any change that can move a
champion (evaluation, transition, policy, pin, unpin, run removal). It asks
``policies.select`` for the decision, rewrites the stored row, and appends a
history row when the champion changes (counted in ``modelreg_champion_changes_total``
once the transaction commits). The caller holds the model's lock
(``registry.lock_model``), so recomputations of one model are serialized.

Two things keep it cheap and calm:

- A new evaluation of one run is decided against the stored head of the ranking
  and the incumbent (``decide_for_change``): the same decision as ranking every
  run, at a cost that does not grow with the registry. Every other change ranks
  in full and refreshes the stored head.
- A change of champion waits while runs that the policy admits are still being
  scored on its revision (``Settling``), up to ``settle_seconds``: a burst of
  retrains moves the champion once, to the best of them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, distinct, func, or_, select
from sqlalchemy.orm import Session, aliased

from modelreg.db.models import (
    JOB_ACTIVE_STATES,
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
from modelreg.errors import ValidationFailed, WouldLeaveNoModel
from modelreg.policies import (
    Candidate,
    Decision,
    EvaluationJob,
    Policy,
    PolicyError,
    Reason,
    admits,
)
from modelreg.policies import select as select_champion
from modelreg.runtime.prometheus import note_champion_change

# A run, or the runs (a version's), about to be deleted in the caller's transaction.
Removing = int | Collection[int] | None


def _gone(removing: int | Collection[int]) -> frozenset[int]:
    return frozenset([removing] if isinstance(removing, int) else removing)


@dataclass(frozen=True)
class Outcome:
    """What a recomputation did to one environment's champion."""

    environment: str
    model: str
    before: int | None
    after: int | None
    reason: str
    pending: int = 0  # evaluations still to come for runs the policy admits
    held: bool = False  # a change waits for them

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
    only: Collection[int] | None = None,
) -> list[Candidate]:
    """Runs of a model with their values for the policy's metric and dataset revision.

    With ``contenders_only`` the query skips runs that could never be eligible
    (wrong stage, a format the policy does not allow, or no value at all), except
    the runs named in ``always`` (incumbent and pin): the decision is the same, the
    work much smaller. ``only`` restricts the query to the runs it names (by primary
    key). Each candidate carries its latest evaluation job on the revision
    (cancelled ones aside): a failed one excludes it.
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
    if only is not None:
        query = query.where(Run.id.in_(list(only)))
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
    removing: Removing = None,
) -> Decision:
    """The decision for one policy row over all its runs, against the stored incumbent and pin.

    ``removing`` names a run (or the runs) about to be deleted: they no longer exist
    for the decision, so neither ranking nor a pin can keep them.
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
        gone = _gone(removing)
        candidates = [c for c in candidates if c.run_id not in gone]
    return select_champion(policy, candidates, incumbent=incumbent, pin=pinned)


def decide_for_change(
    session: Session, row: PolicyRow, policy: Policy, current: Champion | None, run_id: int
) -> Decision | None:
    """The decision after one run's evaluations changed, without ranking every run.

    Only that run's assessment changed, so the best run is now either the stored
    best or that run: ``select`` over those two, the incumbent and the pin gives
    the decision a full ranking would. ``None`` when that does not hold (the run
    is the incumbent or the stored best, whose values moved; or nothing was
    ranked yet): the caller ranks in full. ``ranked`` then holds only those runs.
    """
    if current is None or not current.best_known:
        return None
    if run_id in (current.run_id, current.best_run_id):
        return None
    pin = pin_of(session, row.environment_id, row.model_id)
    pinned = pin.run_id if pin else None
    ids = {run_id} | {i for i in (current.run_id, current.best_run_id, pinned) if i is not None}
    candidates = load_candidates(
        session,
        row.model_id,
        policy,
        row.dataset_revision_id,
        contenders_only=False,
        only=ids,
    )
    return select_champion(policy, candidates, incumbent=current.run_id, pin=pinned)


@dataclass(frozen=True)
class Settling:
    """Whether a change of champion waits for evaluations still to come.

    ``pending``: runs the policy's rules admit with an evaluation pending or
    running on its dataset revision. ``held_since``: when the wait began (``None``
    when nothing is held). ``limit_reached``: the settle limit ended a wait and
    the decision was taken over what is scored.
    """

    pending: int
    held_since: datetime | None = None
    limit_reached: bool = False

    @property
    def held(self) -> bool:
        return self.held_since is not None


DEFAULT_SETTLE_SECONDS = 600.0
# Set by ``Database`` on every session it makes (``settle_seconds``).
SETTLE_KEY = "settle_seconds"


def pending_evaluations(
    session: Session, row: PolicyRow, policy: Policy, *, removing: Removing = None
) -> int:
    """Runs the policy admits whose evaluation on its revision is pending or running.

    Counted per (version, stage, format) in the database and judged by the policy's rules
    here: the cost follows the number of active jobs, not of runs.
    """
    query = (
        select(
            ModelVersion.version,
            ModelVersion.stage,
            Run.artifact_format,
            func.count(distinct(Job.run_id)),
        )
        .join(Run, Run.version_id == ModelVersion.id)
        .join(Job, Job.run_id == Run.id)
        .where(
            ModelVersion.model_id == row.model_id,
            Job.dataset_revision_id == row.dataset_revision_id,
            Job.state.in_(JOB_ACTIVE_STATES),
        )
        .group_by(ModelVersion.version, ModelVersion.stage, Run.artifact_format)
    )
    if removing is not None:
        query = query.where(Job.run_id.not_in(_gone(removing)))
    return sum(n for v, stage, fmt, n in session.execute(query) if admits(policy, v, stage, fmt))


def _settling(
    session: Session,
    row: PolicyRow,
    policy: Policy,
    current: Champion | None,
    decision: Decision,
    *,
    removing: Removing,
) -> Settling:
    """Hold a change while admitted runs are still being scored, up to the settle limit.

    A pin is a release engineer's order and is never held. Nor is a change away
    from an incumbent that the rules no longer admit (its version left the
    tolerance, its stage is no longer allowed) or that is being removed: serving
    it while others are scored would serve what the policy now forbids.
    """
    pending = pending_evaluations(session, row, policy, removing=removing)
    held_run = current.run_id if current is not None else None
    limit = float(session.info.get(SETTLE_KEY, DEFAULT_SETTLE_SECONDS))
    if pending == 0 or decision.champion == held_run or decision.reason == Reason.PINNED:
        return Settling(pending)
    if limit <= 0:  # settling turned off: nothing is held, and no limit is "reached"
        return Settling(pending)
    if held_run is not None:
        if removing is not None and held_run in _gone(removing):
            return Settling(pending)
        run = session.get(Run, held_run)
        if run is None or not admits(
            policy, run.model_version.version, run.model_version.stage, run.artifact_format
        ):
            return Settling(pending)
    now = utcnow()
    since = current.held_since if current is not None and current.held_since else now
    if _aware(now) - _aware(since) >= timedelta(seconds=limit):
        return Settling(pending, limit_reached=True)
    return Settling(pending, held_since=since)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def _store(
    session: Session,
    row: PolicyRow,
    policy: Policy,
    decision: Decision,
    settling: Settling,
    *,
    trigger: str,
    detail: str,
    actor: str,
) -> Outcome:
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
            metric=policy.metric,
            dataset=policy.dataset,
            reason=str(Reason.NO_ELIGIBLE_MODEL),
            policy_revision=row.revision,
        )
        session.add(champion)
    before = champion.run_id
    best = decision.ranked[0].candidate.run_id if decision.ranked else None
    fields: dict[str, Any] = {
        "best_run_id": best,
        "best_known": True,
        "pending_evaluations": settling.pending,
        "held_since": settling.held_since,
    }
    if not settling.held:
        # While a change is held, the champion stays exactly as it was chosen
        # (its value, dataset and policy revision included).
        fields.update(_chosen(session, row, policy, decision))
    after = before if settling.held else decision.champion
    if before != after:
        fields["selected_at"] = utcnow() if after is not None else None
        if settling.limit_reached:
            limit = float(session.info.get(SETTLE_KEY, DEFAULT_SETTLE_SECONDS))
            note = (
                f"settle limit of {limit:g} s reached with {settling.pending} "
                "evaluation(s) pending; decided over what is scored"
            )
            detail = f"{detail}; {note}" if detail else note
        session.add(
            ChampionChange(
                environment_id=row.environment_id,
                model_id=row.model_id,
                from_run_id=before,
                to_run_id=after,
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
        row.environment.name,
        row.model.name,
        before,
        after,
        champion.reason,
        pending=settling.pending,
        held=settling.held,
    )


def _chosen(session: Session, row: PolicyRow, policy: Policy, decision: Decision) -> dict[str, Any]:
    """The stored champion's fields for what ``decision`` chose."""
    chosen = decision.champion_assessment
    run = session.get(Run, decision.champion) if decision.champion is not None else None
    return {
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


def recompute(
    session: Session,
    model: RegisteredModel,
    *,
    trigger: str,
    detail: str = "",
    actor: str,
    force: bool = True,
    environment_id: int | None = None,
    removing: Removing = None,
    changed_run: int | None = None,
) -> list[Outcome]:
    """Recompute and store the champions of ``model`` (one environment, or all).

    ``changed_run`` says that only that run's evaluations changed: each policy is
    then decided against its stored best and incumbent (``decide_for_change``)
    instead of ranking every run. A change of champion waits while runs the
    policy admits are still being scored (``Settling``).

    With ``force=False`` a change that would leave an environment that has a
    champion with none raises :class:`WouldLeaveNoModel` before anything is
    stored; the caller's transaction then rolls back whatever led here. A held
    change leaves the champion in place, so it never strands anyone.
    """
    query = select(PolicyRow).where(PolicyRow.model_id == model.id)
    if environment_id is not None:
        query = query.where(PolicyRow.environment_id == environment_id)
    rows = session.scalars(query.order_by(PolicyRow.id)).all()
    planned = []
    for row in rows:
        policy = domain_policy(row)
        current = champion_row(session, row.environment_id, row.model_id)
        decision = None
        if changed_run is not None and removing is None:
            decision = decide_for_change(session, row, policy, current, changed_run)
        if decision is None:
            decision = decide(session, row, policy, removing=removing)
        settling = _settling(session, row, policy, current, decision, removing=removing)
        planned.append((row, policy, current, decision, settling))
    if not force:
        stranded = [
            row.environment.name
            for row, _, current, decision, settling in planned
            if current is not None
            and current.run_id is not None
            and decision.champion is None
            and not settling.held
        ]
        if stranded:
            raise WouldLeaveNoModel(
                f"this change would leave {', '.join(stranded)} with no {model.name} to serve; "
                "send force: true to do it anyway",
                {"environments": stranded, "model": model.name},
            )
    return [
        _store(
            session, row, policy, decision, settling, trigger=trigger, detail=detail, actor=actor
        )
        for row, policy, _, decision, settling in planned
    ]
