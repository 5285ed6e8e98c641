"""Pins: a release engineer's override that serves one run regardless of ranking."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service import champions
from service.db.models import Pin, Run
from service.environments import get_policy
from service.errors import NotFound, ValidationFailed
from service.registry import lock_model


def pin(
    session: Session, environment: str, model: str, run_id: int, reason: str, *, actor: str
) -> tuple[Pin, champions.Outcome]:
    row = get_policy(session, environment, model)
    lock_model(session, row.model)
    run = session.get(Run, run_id)
    if run is None or run.model_version.model_id != row.model_id:
        raise ValidationFailed.field("run_id", f"run {run_id} is not a run of {row.model.name}")
    current = champions.pin_of(session, row.environment_id, row.model_id)
    if current is None:
        current = Pin(environment_id=row.environment_id, model_id=row.model_id, run_id=run_id)
        session.add(current)
    current.run_id, current.reason, current.actor = run_id, reason, actor
    session.flush()
    (outcome,) = champions.recompute(
        session,
        row.model,
        trigger="pin",
        detail=reason,
        actor=actor,
        environment_id=row.environment_id,
    )
    session.commit()
    return current, outcome


def unpin(
    session: Session, environment: str, model: str, reason: str, *, actor: str
) -> champions.Outcome:
    row = get_policy(session, environment, model)
    lock_model(session, row.model)
    current = champions.pin_of(session, row.environment_id, row.model_id)
    if current is None:
        raise NotFound(
            f"{row.environment.name} has no pin for {row.model.name}",
            {"environment": row.environment.name, "model": row.model.name},
        )
    session.delete(current)
    session.flush()
    (outcome,) = champions.recompute(
        session,
        row.model,
        trigger="unpin",
        detail=reason,
        actor=actor,
        environment_id=row.environment_id,
    )
    session.commit()
    return outcome
