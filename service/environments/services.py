"""Deployment environments and their per-model policies.

``plan`` runs exactly the code of ``put_policy`` and rolls back instead of
committing, so a dry run can never disagree with the real change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelreg.access.roles import Caller
from modelreg.changes import audit, champions
from modelreg.clock import iso
from modelreg.db.models import Champion, DatasetRevision, Environment, PolicyRow, utcnow
from modelreg.db.pagination import Page, offset_page
from modelreg.environments import reads as champion_reads
from modelreg.errors import NotFound, PreconditionFailed, PreconditionRequired, ValidationFailed
from modelreg.evaluation import datasets
from modelreg.evaluation import queue as jobs
from modelreg.names import SPECIFIER_LEN, check_name, name_key
from modelreg.policies import Policy, PolicyError
from modelreg.registry.services import get_model


@dataclass(frozen=True)
class PolicyInput:
    versions: str
    stages: tuple[str, ...]
    metric: str
    dataset: str
    direction: str | None = None
    min_value: float | None = None
    min_improvement: float = 0.0
    allow_prereleases: bool = False
    # None: true when the dataset revision has content (the service scores every run
    # on it), false for a revision registered by digest only.
    require_verified: bool | None = None
    # None or empty: the server's ``allowed_formats`` (empty there too: any format).
    formats: tuple[str, ...] | None = None
    reason: str = ""
    force: bool = False


def put_environment(
    session: Session, name: str, description: str | None, *, caller: Caller
) -> tuple[Environment, bool]:
    check_name("name", name)
    env = session.scalar(select(Environment).where(Environment.name_key == name_key(name)))
    created = env is None
    before = None if env is None else {"name": env.name, "description": env.description}
    if env is None:
        env = Environment(name=name, name_key=name_key(name), description=description or "")
        session.add(env)
    elif description is not None and description != env.description:
        env.description = description
        env.updated_at = utcnow()
    audit.record(
        session,
        caller,
        "environment.put",
        f"environments/{env.name}",
        before=before,
        after={"name": env.name, "description": env.description},
    )
    session.commit()
    return env, created


def get_environment(session: Session, name: str) -> Environment:
    env = session.scalar(select(Environment).where(Environment.name_key == name_key(name)))
    if env is None:
        raise NotFound(f"environment {name!r} not found", {"environment": name})
    return env


def _champions_by_environment(
    session: Session, env_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    rows = session.scalars(
        select(Champion)
        .where(Champion.environment_id.in_(env_ids), Champion.run_id.is_not(None))
        .order_by(Champion.model_key)
    ).all()
    by_env: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_env.setdefault(row.environment_id, []).append(champion_reads.champion_document(row))
    return by_env


def list_environments(
    session: Session, page_token: str | None, page_size: int
) -> Page[tuple[Environment, list[dict[str, Any]]]]:
    """Environments by name, each with the champion of every model it serves."""
    envs = session.scalars(select(Environment).order_by(Environment.name_key)).all()
    page = offset_page(envs, page_token, page_size)
    by_env = _champions_by_environment(session, [e.id for e in page.items])
    return Page([(e, by_env.get(e.id, [])) for e in page.items], page.next_page_token)


def champions_in(session: Session, env: Environment) -> list[dict[str, Any]]:
    return _champions_by_environment(session, [env.id]).get(env.id, [])


def get_policy(session: Session, environment: str, model: str) -> PolicyRow:
    env = get_environment(session, environment)
    mdl = get_model(session, model)
    row = session.scalar(
        select(PolicyRow).where(PolicyRow.environment_id == env.id, PolicyRow.model_id == mdl.id)
    )
    if row is None:
        raise NotFound(
            f"environment {env.name} has no policy for {mdl.name}",
            {"environment": env.name, "model": mdl.name},
        )
    return row


def policy_target(row: PolicyRow) -> str:
    return f"environments/{row.environment.name}/policies/{row.model.name}"


def policy_document(row: PolicyRow) -> dict[str, Any]:
    """A policy's fields and revision, as the audit trail keeps them."""
    return {
        "versions": row.versions,
        "stages": list(row.stages),
        "metric": row.metric,
        "dataset": row.dataset_revision.label,
        "direction": row.direction,
        "min_value": row.min_value,
        "min_improvement": row.min_improvement,
        "allow_prereleases": row.allow_prereleases,
        "require_verified": row.require_verified,
        "formats": list(row.formats or ()),
        "revision": row.revision,
        "updated_at": iso(row.updated_at),
    }


def _validated(
    body: PolicyInput, revision: DatasetRevision, server_formats: tuple[str, ...]
) -> Policy:
    require_verified = body.require_verified
    if require_verified is None:
        require_verified = revision.has_content
    try:
        policy = Policy(
            versions=body.versions,
            stages=tuple(body.stages),
            metric=body.metric,
            dataset=revision.label,
            direction=body.direction,  # type: ignore[arg-type]
            min_value=body.min_value,
            min_improvement=body.min_improvement,
            allow_prereleases=body.allow_prereleases,
            require_verified=require_verified,
            formats=tuple(body.formats or server_formats),
        )
    except PolicyError as exc:
        raise ValidationFailed.field(exc.field, exc.message) from None
    beyond = sorted(set(policy.formats) - set(server_formats)) if server_formats else []
    if beyond:
        raise ValidationFailed.field(
            "formats",
            f"this server allows only {', '.join(server_formats)} (allowed_formats); "
            f"not {', '.join(beyond)}",
        )
    return policy


@dataclass(frozen=True)
class PolicyChange:
    """A stored policy and what storing it did; reads through to the policy row."""

    policy: PolicyRow
    created: bool
    changed: bool
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    eligible_count: int
    evaluations_scheduled: int = 0
    # Evaluations still to come for runs the policy admits, and whether the change of
    # champion waits for them (the champion then stays as it was).
    pending_evaluations: int = 0
    held: bool = False

    @property
    def champion_changed(self) -> bool:
        return (self.before or {}).get("run_id") != (self.after or {}).get("run_id")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def put_policy(
    session: Session,
    environment: str,
    model: str,
    body: PolicyInput,
    *,
    if_match: int | None,
    caller: Caller,
    dry_run: bool = False,
    job_attempts: int = 3,
    server_formats: tuple[str, ...] = (),
) -> PolicyChange:
    """Create or replace a policy and recompute that environment's champion.

    A change needs a reason. ``if_match`` is the revision the client last saw:
    replacing an existing policy without it answers 428, with another revision
    412 (also when no policy exists yet). A replacement that would leave the
    environment with no champion is refused unless ``body.force``. A ``dry_run``
    (the plan) needs neither reason nor ``if_match`` and records nothing.
    ``server_formats`` (the ``allowed_formats`` setting) is what a policy without
    ``formats`` allows, and the most any policy may allow.
    """
    if not dry_run:
        audit.require_reason(body.reason, "a policy change")
    env = get_environment(session, environment)
    mdl = get_model(session, model, lock=True)
    if body.metric and not isinstance(body.metric, str):
        raise ValidationFailed.field("metric", "must be a string")
    revision = datasets.resolve(session, body.dataset)
    policy = _validated(body, revision, server_formats)
    if len(policy.versions) > SPECIFIER_LEN:
        raise ValidationFailed.field("versions", f"at most {SPECIFIER_LEN} characters")
    row = session.scalar(
        select(PolicyRow).where(PolicyRow.environment_id == env.id, PolicyRow.model_id == mdl.id)
    )
    current = row.revision if row is not None else None
    if if_match is not None and if_match != current:
        raise PreconditionFailed(
            f"policy revision is {current}, not {if_match}" if current else "no policy exists yet",
            {"revision": current},
        )
    if if_match is None and current is not None and not dry_run:
        raise PreconditionRequired(
            f"replacing a policy needs If-Match: <revision> (the current one is {current}); "
            "read it with GET first",
            {"revision": current},
        )
    old = policy_document(row) if row is not None else None
    before = champion_reads.stored_champion(session, env.id, mdl.id)
    values = {
        "versions": policy.versions,
        "stages": list(policy.stages),
        "metric": policy.metric,
        "dataset_revision_id": revision.id,
        "direction": policy.direction,
        "min_value": policy.min_value,
        "min_improvement": policy.min_improvement,
        "allow_prereleases": policy.allow_prereleases,
        "require_verified": policy.require_verified,
        "formats": list(policy.formats),
    }
    created = row is None
    names_new_revision = row is None or row.dataset_revision_id != revision.id
    if row is None:
        row = PolicyRow(environment=env, model=mdl, revision=1, **values)
        session.add(row)
    changed = created or any(getattr(row, k) != v for k, v in values.items())
    if changed and not created:
        for key, value in values.items():
            setattr(row, key, value)
        # The audit's ``old`` document loaded the relationship: keep it in step.
        row.dataset_revision = revision
        row.revision += 1
    if changed:
        row.reason = body.reason
        row.updated_by = caller.name
        row.updated_at = utcnow()
    session.flush()
    scheduled = 0
    if names_new_revision:
        # Every run of the model gets scored on the revision the policy now names.
        scheduled = jobs.schedule_for_revision(
            session,
            mdl.id,
            revision,
            trigger="policy",
            actor=caller.name,
            max_attempts=job_attempts,
        )
    outcomes = champions.recompute(
        session,
        mdl,
        trigger="policy",
        detail=f"policy revision {row.revision}" + (f" ({body.reason})" if body.reason else ""),
        actor=caller.name,
        force=body.force or dry_run,
        environment_id=env.id,
    )
    after = champion_reads.stored_champion(session, env.id, mdl.id)
    eligible = len(champions.decide(session, row, policy).ranked)
    outcome = outcomes[0] if outcomes else None
    result = PolicyChange(
        row,
        created,
        changed,
        before,
        after,
        eligible,
        scheduled,
        pending_evaluations=outcome.pending if outcome else 0,
        held=outcome.held if outcome else False,
    )
    if not dry_run:
        audit.record(
            session,
            caller,
            "policy.put",
            policy_target(row),
            before=old,
            after={
                **policy_document(row),
                "changed": changed,
                "evaluations_scheduled": scheduled,
                "champions": audit.champion_moves(outcomes),
            },
            reason=body.reason,
        )
        session.commit()
    return result


def plan(
    session: Session,
    environment: str,
    model: str,
    body: PolicyInput,
    *,
    caller: Caller,
    server_formats: tuple[str, ...] = (),
) -> dict[str, Any]:
    """What ``put_policy`` would do, without doing it."""
    change = put_policy(
        session,
        environment,
        model,
        body,
        if_match=None,
        caller=caller,
        dry_run=True,
        server_formats=server_formats,
    )
    session.rollback()
    before_run = change.before["run_id"] if change.before else None
    after_run = change.after["run_id"] if change.after else None
    return {
        "current": change.before,
        "proposed": change.after,
        "changes": before_run != after_run,
        "eligible_count": change.eligible_count,
        "would_leave_no_model": before_run is not None and after_run is None,
        "evaluations_scheduled": change.evaluations_scheduled,
        # Runs still to be scored: the champion holds until they are (or the settle
        # limit passes), then moves once.
        "pending_evaluations": change.pending_evaluations,
        "held": change.held,
    }
