"""The settle limit: champions whose change waited too long are decided over what is scored.

A change of champion waits while runs that the policy admits are still being
scored (``modelreg.changes.champions.Settling``). When the wait passes ``settle_seconds``
and no result arrived to end it, nothing else would recompute the champion:
workers call :func:`release_expired_holds` between jobs to do it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from modelreg.access.roles import Caller
from modelreg.changes import audit, champions
from modelreg.db.models import Champion, RegisteredModel, utcnow
from modelreg.db.session import Database
from modelreg.registry.services import lock_model


def release_expired_holds(db: Database, *, actor: str) -> int:
    """Recompute every champion held for longer than the settle limit; returns how many."""
    limit = db.settle_seconds if db.settle_seconds is not None else champions.DEFAULT_SETTLE_SECONDS
    cutoff = utcnow() - timedelta(seconds=limit)
    with db.unit_of_work(write=False) as session:
        held = session.execute(
            select(Champion.model_id, Champion.environment_id).where(
                Champion.held_since.is_not(None), Champion.held_since <= cutoff
            )
        ).all()
    for model_id, environment_id in held:
        with db.unit_of_work() as session:
            model = session.get(RegisteredModel, model_id)
            if model is None:
                continue
            lock_model(session, model)
            outcomes = champions.recompute(
                session,
                model,
                trigger="settle_limit",
                detail=f"held for more than {limit:g} s",
                actor=actor,
                environment_id=environment_id,
            )
            if any(o.changed for o in outcomes):
                audit.record(
                    session,
                    Caller(actor, "worker"),
                    "champion.settle",
                    f"models/{model.name}",
                    before=None,
                    after={"champions": audit.champion_moves(outcomes)},
                )
            session.commit()
    return len(held)
