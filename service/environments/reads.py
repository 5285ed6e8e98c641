"""Reading champions: the serving layers' lookup, explanations and history.

Writes live in ``modelreg.changes.champions`` (the upkeep); this module only reads what it
stored, except ``explain``, which recomputes the decision to show every candidate.
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from modelreg.changes.champions import (
    champion_row,
    decide,
    domain_policy,
    pending_evaluations,
    pin_of,
)
from modelreg.clock import iso
from modelreg.db.models import Champion, ChampionChange, Environment, PolicyRow, RegisteredModel
from modelreg.db.pagination import Page, decode_token, encode_token
from modelreg.db.session import Database
from modelreg.errors import NoEligibleModel, NotFound
from modelreg.names import name_key
from modelreg.policies import EvaluationJob

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
    Champion.artifact_format,
    Champion.allowed_formats,
    Champion.selected_at,
    Champion.reason,
    Champion.policy_revision,
    Champion.pending_evaluations,
    Champion.held_since,
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
            "format": row.artifact_format,
        },
        "selected_at": iso(row.selected_at),
        "reason": row.reason,
        "policy_revision": row.policy_revision,
        "allowed_formats": list(row.allowed_formats or ()),
        **settling_document(row),
    }


def settling_document(row: Any) -> dict[str, Any]:
    """Evaluations still to come for runs the policy admits, and any change they hold back."""
    return {
        "pending_evaluations": row.pending_evaluations,
        "held": row.held_since is not None,
        "held_since": iso(row.held_since) if row.held_since is not None else None,
    }


def etag_of(row: Any) -> str:
    """Changes whenever the document does: the upkeep bumps ``updated_at`` on any change."""
    stamp = iso(row.updated_at)
    return f"{row.run_id}.{row.policy_revision}.{stamp}"


# Built once: compiling an ORM select per request costs more than running it.
_LOOKUP = select(
    *[Champion.__table__.c[c.key] for c in _CHAMPION_COLUMNS],
    Champion.__table__.c.updated_at,
).where(
    Champion.__table__.c.environment_key == bindparam("environment_key"),
    Champion.__table__.c.model_key == bindparam("model_key"),
)


def read_champion(db: Database, environment: str, model: str) -> tuple[dict[str, Any], str]:
    """The serving layers' question: one lookup on a unique index. Returns (document, ETag)."""
    row = db.lookup(
        _LOOKUP, {"environment_key": name_key(environment), "model_key": name_key(model)}
    )
    if row is None:
        with db.read_engine.connect() as conn:
            _raise_missing(conn, environment, model)
    if row.run_id is None:
        pending = row.pending_evaluations
        waiting = f"; {pending} evaluation(s) of eligible versions pending" if pending else ""
        raise NoEligibleModel(
            f"no {row.model} run is eligible for {row.environment}{waiting}",
            {"environment": row.environment, "model": row.model, "pending_evaluations": pending},
        )
    return champion_document(row), etag_of(row)


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
    row = champion_row(session, env_id, model_id)
    if row is None or row.run_id is None:
        return None
    return champion_document(row)


def explain(session: Session, row: PolicyRow) -> dict[str, Any]:
    """Every run of the model, eligible or not, with reasons: the stored decision, shown.

    ``champion`` is the run served. While a change waits for evaluations still to
    come (``held``), ``decision`` names the run the policy would choose over what
    is scored now; otherwise the two are the same.
    """
    policy = domain_policy(row)
    decision = decide(session, row, policy, contenders_only=False)
    pin = pin_of(session, row.environment_id, row.model_id)
    stored = champion_row(session, row.environment_id, row.model_id)
    held = stored is not None and stored.held_since is not None
    return {
        "environment": row.environment.name,
        "model": row.model.name,
        "champion": stored.run_id if held and stored is not None else decision.champion,
        "reason": stored.reason if held and stored is not None else str(decision.reason),
        "decision": {"champion": decision.champion, "reason": str(decision.reason)},
        "pending_evaluations": pending_evaluations(session, row, policy),
        "held": held,
        "held_since": iso(stored.held_since) if held and stored is not None else None,
        "policy_revision": row.revision,
        "metric": policy.metric,
        "dataset": policy.dataset,
        "direction": policy.direction,
        "require_verified": policy.require_verified,
        "formats": list(policy.formats),
        "pinned_run_id": pin.run_id if pin else None,
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
                "warnings": [str(w) for w in a.warnings],
                "reported": a.candidate.reported,
                "verified": a.candidate.verified,
                "format": a.candidate.artifact_format,
                "evaluation": _job_document(a.candidate.job),
            }
            for a in decision.assessments
        ],
    }


def _job_document(job: EvaluationJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"job_id": job.job_id, "state": job.state, "error": job.error}


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
