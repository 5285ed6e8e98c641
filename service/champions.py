"""Champion upkeep: every (environment, model) with a policy has a stored champion.

:func:`recompute` runs inside the transaction of any change that can move a
champion (evaluation, transition, policy, pin, unpin, run removal). It asks
``policies.select`` for the decision, rewrites the stored row, and appends a
history row when the champion changes. The caller holds the model's lock
(``registry.lock_model``), so recomputations of one model are serialized.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, and_, or_, select
from sqlalchemy.orm import Session, aliased

from policies import Candidate, Decision, Policy, PolicyError
from policies import select as select_champion
from service.clock import iso
from service.db.models import (
    Champion,
    ChampionChange,
    Environment,
    Evaluation,
    ModelVersion,
    Pin,
    PolicyRow,
    RegisteredModel,
    Run,
    utcnow,
)
from service.errors import NoEligibleModel, NotFound, ValidationFailed, WouldLeaveNoModel
from service.names import name_key
from service.pagination import Page, decode_token, encode_token


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
    (wrong stage, or no value at all), except the runs named in ``always``
    (incumbent and pin): the decision is the same, the work much smaller.
    """
    rep, ver = aliased(Evaluation), aliased(Evaluation)

    def joined(alias: Any, source: str) -> Any:
        return and_(
            alias.run_id == Run.id,
            alias.dataset_revision_id == dataset_revision_id,
            alias.metric == policy.metric,
            alias.source == source,
        )

    query = (
        select(Run.id, ModelVersion.version, Run.number, ModelVersion.stage, rep.value, ver.value)
        .join(ModelVersion, Run.version_id == ModelVersion.id)
        .outerjoin(rep, joined(rep, "reported"))
        .outerjoin(ver, joined(ver, "verified"))
        .where(ModelVersion.model_id == model_id)
    )
    if contenders_only:
        contender = and_(
            ModelVersion.stage.in_(policy.stages), or_(rep.id.is_not(None), ver.id.is_not(None))
        )
        query = query.where(or_(contender, Run.id.in_(list(always))) if always else contender)
    return [
        Candidate(
            run_id=r[0], version=r[1], run_number=r[2], stage=r[3], reported=r[4], verified=r[5]
        )
        for r in session.execute(query)
    ]


def _pin_of(session: Session, env_id: int, model_id: int) -> Pin | None:
    return session.scalar(select(Pin).where(Pin.environment_id == env_id, Pin.model_id == model_id))


def _champion_row(session: Session, env_id: int, model_id: int) -> Champion | None:
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
    current = _champion_row(session, row.environment_id, row.model_id)
    incumbent = current.run_id if current else None
    pin = _pin_of(session, row.environment_id, row.model_id)
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
        "reason": str(decision.reason),
        "policy_revision": row.revision,
    }
    champion = _champion_row(session, row.environment_id, row.model_id)
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
            current = _champion_row(session, row.environment_id, row.model_id)
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


# -- reading ---------------------------------------------------------------------------

_CHAMPION_COLUMNS = [
    Champion.environment,
    Champion.model,
    Champion.version,
    Champion.stage,
    Champion.run_id,
    Champion.run_number,
    Champion.metric,
    Champion.value,
    Champion.dataset,
    Champion.artifact_sha256,
    Champion.artifact_size,
    Champion.selected_at,
    Champion.reason,
    Champion.policy_revision,
]


def champion_document(row: Any) -> dict[str, Any]:
    """The champion as the API returns it, from a stored champion row."""
    return {
        "environment": row.environment,
        "model": row.model,
        "version": row.version,
        "stage": row.stage,
        "run_id": row.run_id,
        "run_number": row.run_number,
        "metric": {"name": row.metric, "value": row.value, "dataset": row.dataset},
        "artifact": {
            "url": f"/api/v1/runs/{row.run_id}/artifact",
            "sha256": row.artifact_sha256,
            "size": row.artifact_size,
        },
        "selected_at": iso(row.selected_at),
        "reason": row.reason,
        "policy_revision": row.policy_revision,
    }


def etag_of(document: dict[str, Any]) -> str:
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def read_champion(conn: Connection, environment: str, model: str) -> dict[str, Any]:
    """The serving layers' question, answered with one lookup on a unique index."""
    row = conn.execute(
        select(*_CHAMPION_COLUMNS).where(
            Champion.environment_key == name_key(environment),
            Champion.model_key == name_key(model),
        )
    ).one_or_none()
    if row is None:
        _raise_missing(conn, environment, model)
    if row.run_id is None:
        raise NoEligibleModel(
            f"no {row.model} run is eligible for {row.environment}",
            {"environment": row.environment, "model": row.model},
        )
    return champion_document(row)


def _raise_missing(conn: Connection, environment: str, model: str) -> NoReturn:
    if (
        conn.scalar(select(Environment.id).where(Environment.name_key == name_key(environment)))
        is None
    ):
        raise NotFound(f"environment {environment!r} not found", {"environment": environment})
    if (
        conn.scalar(select(RegisteredModel.id).where(RegisteredModel.name_key == name_key(model)))
        is None
    ):
        raise NotFound(f"model {model!r} not found", {"model": model})
    raise NotFound(
        f"environment {environment!r} has no policy for model {model!r}",
        {"environment": environment, "model": model},
    )


def champions_of_model(session: Session, model: RegisteredModel) -> list[dict[str, Any]]:
    rows = session.execute(
        select(*_CHAMPION_COLUMNS)
        .where(Champion.model_id == model.id, Champion.run_id.is_not(None))
        .order_by(Champion.environment_key)
    ).all()
    return [champion_document(r) for r in rows]


def stored_champion(session: Session, env_id: int, model_id: int) -> dict[str, Any] | None:
    row = _champion_row(session, env_id, model_id)
    if row is None or row.run_id is None:
        return None
    return champion_document(row)


def explain(session: Session, row: PolicyRow) -> dict[str, Any]:
    """Every run of the model, eligible or not, with reasons: the stored decision, shown."""
    policy = domain_policy(row)
    decision = decide(session, row, policy, contenders_only=False)
    return {
        "environment": row.environment.name,
        "model": row.model.name,
        "champion": decision.champion,
        "reason": str(decision.reason),
        "policy_revision": row.revision,
        "metric": policy.metric,
        "dataset": policy.dataset,
        "direction": policy.direction,
        "candidates": [
            {
                "run_id": a.candidate.run_id,
                "version": a.candidate.version,
                "run_number": a.candidate.run_number,
                "stage": a.candidate.stage,
                "value": a.value,
                "eligible": a.eligible,
                "rank": a.rank,
                "reasons": [str(r) for r in a.reasons],
            }
            for a in decision.assessments
        ],
    }


def history(
    session: Session, env_id: int, model_id: int, page_token: str | None, page_size: int
) -> Page[ChampionChange]:
    """Champion changes, newest first, paged by id so new changes never shift a page."""
    before = decode_token(page_token, "k")
    query = select(ChampionChange).where(
        ChampionChange.environment_id == env_id, ChampionChange.model_id == model_id
    )
    if before is not None:
        query = query.where(ChampionChange.id < before)
    rows = list(session.scalars(query.order_by(ChampionChange.id.desc()).limit(page_size + 1)))
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(rows, encode_token(k=rows[-1].id) if more else None)
