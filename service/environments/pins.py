"""Pins: a release engineer's override that serves one run regardless of ranking.

Pinning and unpinning change what an environment serves: both need a reason.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelreg.changes import audit, champions
from modelreg.changes.unit import Change
from modelreg.db.models import Pin, PolicyRow, Run, utcnow
from modelreg.environments.services import get_policy
from modelreg.errors import NotFound, ValidationFailed
from modelreg.roles import Caller


def pin_target(row: PolicyRow) -> str:
    return f"environments/{row.environment.name}/models/{row.model.name}/pin"


def get_pin(session: Session, environment: str, model: str) -> Pin:
    """The pin of ``environment`` for ``model``; :class:`NotFound` when there is none."""
    row = get_policy(session, environment, model)
    current = champions.pin_of(session, row.environment_id, row.model_id)
    if current is None:
        raise NotFound(
            f"{row.environment.name} has no pin for {row.model.name}; its policy decides",
            {"environment": row.environment.name, "model": row.model.name},
        )
    return current


def pin(
    session: Session, environment: str, model: str, run_id: int, reason: str, *, caller: Caller
) -> tuple[Pin, champions.Outcome]:
    audit.require_reason(reason, "a pin")
    row = get_policy(session, environment, model)
    with Change(session, caller, "pin.set", pin_target(row), reason=reason) as change:
        change.lock(row.model)
        run = session.get(Run, run_id)
        if run is None or run.model_version.model_id != row.model_id:
            raise ValidationFailed.field("run_id", f"run {run_id} is not a run of {row.model.name}")
        current = champions.pin_of(session, row.environment_id, row.model_id)
        before = {"run_id": current.run_id, "reason": current.reason} if current else None
        if current is None:
            current = Pin(environment_id=row.environment_id, model_id=row.model_id, run_id=run_id)
            session.add(current)
        current.run_id, current.reason, current.actor = run_id, reason, caller.name
        current.created_at = utcnow()  # a new run pinned is a new pin: its time is now
        (outcome,) = change.recompute(
            row.model, trigger="pin", detail=reason, environment_id=row.environment_id
        )
        change.record(before=before, after={"run_id": run_id})
    return current, outcome


def unpin(
    session: Session, environment: str, model: str, reason: str, *, caller: Caller
) -> champions.Outcome:
    audit.require_reason(reason, "removing a pin")
    row = get_policy(session, environment, model)
    with Change(session, caller, "pin.remove", pin_target(row), reason=reason) as change:
        change.lock(row.model)
        current = champions.pin_of(session, row.environment_id, row.model_id)
        if current is None:
            raise NotFound(
                f"{row.environment.name} has no pin for {row.model.name}",
                {"environment": row.environment.name, "model": row.model.name},
            )
        before = {"run_id": current.run_id, "reason": current.reason}
        session.delete(current)
        (outcome,) = change.recompute(
            row.model, trigger="unpin", detail=reason, environment_id=row.environment_id
        )
        change.record(before=before, after={"run_id": None})
    return outcome
