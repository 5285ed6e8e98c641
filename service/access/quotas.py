"""Per-token limits, so one uploader cannot starve the others.

- ``max_pending_jobs_per_token``: a token whose jobs (``jobs.actor``) pending or
  running number this many may not register runs nor request evaluations until some
  finish. Its registrations still schedule every job they need, so the count can
  pass the limit by the jobs of one registration.
- ``max_stored_bytes_per_token``: the artifact sizes of the runs a token registered
  (``runs.registered_by``, identical bytes counted per run) may not pass this.

0 means no limit. Refusals are ``429 too_many_requests`` naming the setting and the
usage; registrations check before they read the body, again before the artifact is
moved into the store, and once more in the transaction that writes the run (under a
per-token lock on PostgreSQL), so concurrent uploads of one token cannot both pass.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from modelreg.db.models import Job, Run
from modelreg.errors import TooManyRequests
from modelreg.evaluation.queue import ACTIVE


def lock_token(session: Session, actor: str) -> None:
    """Serialize one token's usage checks with its writes (PostgreSQL; SQLite's write
    transactions are serialized already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('modelreg.quota'), hashtext(:actor))"),
            {"actor": actor},
        )


def pending_jobs(session: Session, actor: str) -> int:
    query = select(func.count()).where(Job.actor == actor, Job.state.in_(ACTIVE))
    return int(session.scalar(query) or 0)


def stored_bytes(session: Session, actor: str) -> int:
    query = select(func.coalesce(func.sum(Run.artifact_size), 0)).where(Run.registered_by == actor)
    return int(session.scalar(query) or 0)


def check_pending_jobs(session: Session, actor: str, limit: int) -> None:
    if limit <= 0:
        return
    pending = pending_jobs(session, actor)
    if pending >= limit:
        raise TooManyRequests(
            f"the token {actor!r} has {pending} evaluation jobs pending or running, the limit"
            f" of max_pending_jobs_per_token ({limit}); try again once some have finished",
            {"setting": "max_pending_jobs_per_token", "limit": limit, "usage": pending},
        )


def check_stored_bytes(session: Session, actor: str, limit: int, adding: int) -> None:
    if limit <= 0:
        return
    used = stored_bytes(session, actor)
    if used + adding > limit:
        raise TooManyRequests(
            f"the token {actor!r} has registered {used} bytes of artifacts; {adding} more"
            f" would pass max_stored_bytes_per_token ({limit})",
            {
                "setting": "max_stored_bytes_per_token",
                "limit": limit,
                "usage": used,
                "adding": adding,
            },
        )
