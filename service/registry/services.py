"""Registered models and their versions: creation, lookup, listing and stage transitions."""

from __future__ import annotations

from typing import Any

from packaging.version import Version
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelreg.access.roles import Caller, allows, transition_role
from modelreg.changes import audit, champions
from modelreg.db.models import ModelVersion, RegisteredModel, utcnow
from modelreg.db.pagination import Page, offset_page
from modelreg.errors import (
    AlreadyExists,
    Forbidden,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from modelreg.names import check_name, name_key, parse_version_field
from modelreg.policies.stages import STAGES, allowed_targets, can_transition
from modelreg.policies.versions import InvalidVersionError, in_tolerance, parse_specifier


def lock_model(session: Session, model: RegisteredModel) -> None:
    """Serialize every change that can move this model's champions.

    On PostgreSQL this is a row lock held to the end of the transaction; on
    SQLite the write transaction (``BEGIN IMMEDIATE``) already holds the lock.
    """
    session.execute(
        select(RegisteredModel.id).where(RegisteredModel.id == model.id).with_for_update()
    )
    # Rows loaded before the lock may have changed while we waited for it; the
    # identity map would keep serving the old values (a stale run counter would
    # hand out a number twice). Callers lock before they modify anything, so
    # expiring loses no pending change.
    session.expire_all()


def model_target(model: RegisteredModel) -> str:
    return f"models/{model.name}"


def version_target(mv: ModelVersion) -> str:
    return f"models/{mv.model.name}/versions/{mv.version}"


def create_model(
    session: Session,
    name: str,
    description: str = "",
    tags: dict[str, Any] | None = None,
    *,
    caller: Caller,
) -> RegisteredModel:
    check_name("name", name)
    if session.scalar(select(RegisteredModel.id).where(RegisteredModel.name_key == name_key(name))):
        raise AlreadyExists(f"model {name!r} already exists", {"name": name})
    model = RegisteredModel(
        name=name, name_key=name_key(name), description=description, tags=tags or {}
    )
    session.add(model)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent request registered the same name between our check and insert.
        raise AlreadyExists(f"model {name!r} already exists", {"name": name}) from None
    audit.record(
        session,
        caller,
        "model.create",
        model_target(model),
        before=None,
        after={"name": model.name, "description": model.description, "tags": model.tags},
    )
    session.commit()
    return model


def get_model(session: Session, name: str, *, lock: bool = False) -> RegisteredModel:
    model = session.scalar(
        select(RegisteredModel)
        .where(RegisteredModel.name_key == name_key(name))
        .options(selectinload(RegisteredModel.versions))
    )
    if model is None:
        raise NotFound(f"model {name!r} not found", {"model": name})
    if lock:
        lock_model(session, model)
    return model


def list_models(session: Session, page_token: str | None, page_size: int) -> Page[RegisteredModel]:
    models = session.scalars(
        select(RegisteredModel)
        .order_by(RegisteredModel.name_key)
        .options(selectinload(RegisteredModel.versions))
    ).all()
    return offset_page(models, page_token, page_size)


def sorted_versions(model: RegisteredModel) -> list[ModelVersion]:
    return sorted(model.versions, key=lambda v: Version(v.version))


def create_version(
    session: Session,
    model_name: str,
    version: str,
    description: str = "",
    tags: dict[str, Any] | None = None,
    *,
    caller: Caller,
) -> ModelVersion:
    normalized, canonical = parse_version_field("version", version)
    model = get_model(session, model_name)
    clash = session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.canonical_version == canonical
        )
    )
    if clash is not None:
        raise AlreadyExists(
            f"{model.name} already has version {clash.version}, equal to {normalized}",
            {"model": model.name, "version": clash.version},
        )
    mv = ModelVersion(
        model=model,
        version=normalized,
        canonical_version=canonical,
        is_prerelease=Version(normalized).is_prerelease,
        stage="None",
        description=description,
        tags=tags or {},
    )
    name = model.name  # the session is unusable after a failed flush: read it now
    session.add(mv)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent request registered an equal version between our check and insert.
        raise AlreadyExists(
            f"{name} already has a version equal to {normalized}",
            {"model": name, "version": normalized},
        ) from None
    audit.record(
        session,
        caller,
        "version.create",
        version_target(mv),
        before=None,
        after={
            "model": model.name,
            "version": mv.version,
            "stage": mv.stage,
            "description": mv.description,
            "tags": mv.tags,
        },
    )
    session.commit()
    return mv


def get_version(
    session: Session, model_name: str, version: str, *, lock_for_champions: bool = False
) -> ModelVersion:
    _, canonical = parse_version_field("version", version)
    model = get_model(session, model_name, lock=lock_for_champions)
    mv = session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.canonical_version == canonical
        )
    )
    if mv is None:
        raise NotFound(
            f"model {model.name} has no version {version}",
            {"model": model.name, "version": version},
        )
    return mv


def list_versions(
    session: Session,
    model_name: str,
    *,
    spec: str | None,
    stage: str | None,
    prereleases: bool,
    page_token: str | None,
    page_size: int,
) -> Page[ModelVersion]:
    """Versions in PEP 440 order, optionally inside a tolerance and in one stage."""
    model = get_model(session, model_name)
    if stage is not None and stage not in STAGES:
        raise ValidationFailed.field("stage", f"unknown stage {stage!r}; known: {list(STAGES)}")
    versions = sorted_versions(model)
    if spec:
        try:
            specifier = parse_specifier(spec)
            versions = [
                v
                for v in versions
                if in_tolerance(specifier, v.version, allow_prereleases=prereleases)
            ]
        except InvalidVersionError as exc:
            raise ValidationFailed.field("spec", str(exc)) from None
    if stage is not None:
        versions = [v for v in versions if v.stage == stage]
    return offset_page(versions, page_token, page_size)


def transition(
    session: Session,
    model_name: str,
    version: str,
    *,
    stage: str,
    reason: str,
    force: bool,
    caller: Caller,
    from_stage: str | None = None,
) -> tuple[ModelVersion, list[champions.Outcome]]:
    """Move a version to another stage and recompute the champions it can move.

    ``from_stage``, when given, is the stage the client believes the version is in:
    a version that has moved meanwhile answers ``invalid_transition`` with its
    actual stage. Refused with ``forbidden`` when the caller's role may not make
    this transition (``ci`` moves only between None and Staging); a transition into
    or out of Production needs a reason; and ``would_leave_no_model`` when an
    environment that has a champion would be left with none, unless ``force``.
    """
    if stage not in STAGES:
        raise ValidationFailed.field("stage", f"unknown stage {stage!r}; known: {list(STAGES)}")
    if from_stage is not None and from_stage not in STAGES:
        raise ValidationFailed.field(
            "from_stage", f"unknown stage {from_stage!r}; known: {list(STAGES)}"
        )
    mv = get_version(session, model_name, version, lock_for_champions=True)
    if from_stage is not None and mv.stage != from_stage:
        raise InvalidTransition(
            f"{mv.model.name} {mv.version} is in {mv.stage}, not {from_stage}: "
            "it moved since you looked",
            {"from_stage": from_stage, "actual": mv.stage, "to": stage},
        )
    if not can_transition(mv.stage, stage):
        raise InvalidTransition(
            f"{mv.model.name} {mv.version} cannot move from {mv.stage} to {stage}",
            {"from": mv.stage, "to": stage, "allowed": allowed_targets(mv.stage)},
        )
    needed = transition_role(mv.stage, stage)
    if not allows(caller.role, needed):
        raise Forbidden(
            f"moving {mv.stage} -> {stage} needs the {needed!r} role; "
            f"this token has {caller.role!r}",
            {"from": mv.stage, "to": stage, "required": needed, "role": caller.role},
        )
    if "Production" in (mv.stage, stage):
        audit.require_reason(reason, "a transition into or out of Production")
    previous = mv.stage
    mv.stage = stage
    mv.stage_changed_at = utcnow()
    session.flush()
    outcomes = champions.recompute(
        session,
        mv.model,
        trigger="transition",
        detail=f"{mv.version}: {previous} -> {stage}" + (f" ({reason})" if reason else ""),
        actor=caller.name,
        force=force,
    )
    audit.record(
        session,
        caller,
        "version.transition",
        version_target(mv),
        before={"stage": previous},
        after={"stage": stage, "champions": audit.champion_moves(outcomes)},
        reason=reason,
    )
    session.commit()
    return mv, outcomes
