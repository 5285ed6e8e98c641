"""SQLAlchemy models. Every uniqueness rule of the design is a database constraint.

Rows hold data only; rules live in ``policies`` and the service layer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAME_LEN = 100
# The largest id or number any backend stores (SQLite and BIGINT are signed 64-bit).
# A larger integer from a client cannot name a row, and SQLite cannot even bind it.
MAX_ID = 2**63 - 1

# Named constraints make Alembic migrations reproducible on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    # Names are unique case-insensitively; the key is the lower-cased name.
    name_key: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[ModelVersion]] = relationship(back_populates="model")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "canonical_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    version: Mapped[str] = mapped_column(String(128))
    canonical_version: Mapped[str] = mapped_column(String(128))
    is_prerelease: Mapped[bool] = mapped_column(Boolean)
    stage: Mapped[str] = mapped_column(String(16), default="None")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Run numbers are handed out from this counter under a row lock, so they
    # never repeat, even after a run is removed.
    next_run_number: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stage_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[RegisteredModel] = relationship(back_populates="versions")
    runs: Mapped[list[Run]] = relationship(back_populates="model_version")


class Run(Base):
    __tablename__ = "runs"
    # Run ids outlive runs (history, caches of /runs/{id}/artifact): SQLite must never
    # hand a removed run's id to a new one, which it does without AUTOINCREMENT.
    __table_args__ = (UniqueConstraint("version_id", "number"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    artifact_sha256: Mapped[str] = mapped_column(String(64), index=True)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    artifact_format: Mapped[str] = mapped_column(String(32))
    artifact_filename: Mapped[str] = mapped_column(String(255), default="")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The token (name) that registered the run: what max_stored_bytes_per_token counts.
    registered_by: Mapped[str] = mapped_column(
        String(NAME_LEN), default="", server_default="", index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model_version: Mapped[ModelVersion] = relationship(back_populates="runs")


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    name_key: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    revisions: Mapped[list[DatasetRevision]] = relationship(back_populates="dataset")


class DatasetRevision(Base):
    __tablename__ = "dataset_revisions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "revision"),
        UniqueConstraint("dataset_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    revision: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when the content itself was uploaded (the artifact store holds it under its
    # sha256); a revision registered by digest alone serves reported metrics only.
    has_content: Mapped[bool] = mapped_column(Boolean, default=False)
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    task: Mapped[str | None] = mapped_column(String(16), nullable=True)
    content_format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    row_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    columns: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    dataset: Mapped[Dataset] = relationship(back_populates="revisions")

    @property
    def label(self) -> str:
        return f"{self.dataset.name}@{self.revision}"


class Evaluation(Base):
    __tablename__ = "evaluations"
    # One value per (run, dataset revision, metric) and origin: a reported and a
    # verified value may stand side by side so that mismatches can be shown.
    __table_args__ = (
        UniqueConstraint("run_id", "dataset_revision_id", "metric", "source"),
        Index("ix_evaluations_revision_metric", "dataset_revision_id", "metric"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    dataset_revision_id: Mapped[int] = mapped_column(ForeignKey("dataset_revisions.id"))
    metric: Mapped[str] = mapped_column(String(NAME_LEN))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), default="reported")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[Run] = relationship()
    dataset_revision: Mapped[DatasetRevision] = relationship()


# Job states in which an evaluation is still to come (``modelreg.evaluation.queue`` names them all).
JOB_ACTIVE_STATES = ("pending", "running")


class Job(Base):
    """A unit of background work (today: evaluating one run on one dataset revision).

    Workers claim pending jobs with row locks; a claim carries a fresh ``claim_token``
    and a lease that the worker renews while it works. A job whose lease ran out
    (its worker died) is claimable again; a worker whose token no longer matches
    has lost the job and may not finish it, so no job is finished twice.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "state", "available_at"),
        Index("ix_jobs_run_revision", "run_id", "dataset_revision_id"),
        Index("ix_jobs_actor_state", "actor", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="evaluate")
    # A plain number, like history's: a job's record outlives its run.
    run_id: Mapped[int] = mapped_column(Integer)
    dataset_revision_id: Mapped[int] = mapped_column(ForeignKey("dataset_revisions.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    trigger: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(NAME_LEN), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The isolation level its evaluation ran at (strict, process); None before it ran.
    isolation: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset_revision: Mapped[DatasetRevision] = relationship()


class Environment(Base):
    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    name_key: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PolicyRow(Base):
    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("environment_id", "model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    versions: Mapped[str] = mapped_column(String(512))
    stages: Mapped[list[str]] = mapped_column()
    metric: Mapped[str] = mapped_column(String(NAME_LEN))
    dataset_revision_id: Mapped[int] = mapped_column(ForeignKey("dataset_revisions.id"))
    direction: Mapped[str] = mapped_column(String(3))
    min_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_improvement: Mapped[float] = mapped_column(Float, default=0.0)
    allow_prereleases: Mapped[bool] = mapped_column(Boolean, default=False)
    require_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Artifact formats a run may have to be chosen; empty: any.
    formats: Mapped[list[str]] = mapped_column(default=list, server_default=text("'[]'"))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str] = mapped_column(String(NAME_LEN), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    environment: Mapped[Environment] = relationship()
    model: Mapped[RegisteredModel] = relationship()
    dataset_revision: Mapped[DatasetRevision] = relationship()


class Pin(Base):
    __tablename__ = "pins"
    __table_args__ = (UniqueConstraint("environment_id", "model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(NAME_LEN), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Champion(Base):
    """The stored choice of every (environment, model) that has a policy.

    It repeats what the champion endpoint returns (names, version, stage, value,
    artifact) so that serving layers are answered with one indexed lookup,
    whatever the number of runs. The upkeep rewrites it in the same transaction
    as every change that can move it.
    """

    __tablename__ = "champions"
    __table_args__ = (
        UniqueConstraint("environment_id", "model_id"),
        UniqueConstraint("environment_key", "model_key", name="uq_champions_lookup"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    environment_key: Mapped[str] = mapped_column(String(NAME_LEN))
    model_key: Mapped[str] = mapped_column(String(NAME_LEN))
    environment: Mapped[str] = mapped_column(String(NAME_LEN))
    model: Mapped[str] = mapped_column(String(NAME_LEN))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    run_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metric: Mapped[str] = mapped_column(String(NAME_LEN))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    dataset: Mapped[str] = mapped_column(String(NAME_LEN + 12))
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    artifact_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    artifact_format: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The policy's formats ([] or None: any), for serving layers to check before loading.
    allowed_formats: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str] = mapped_column(String(32))
    policy_revision: Mapped[int] = mapped_column(Integer)
    selected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The top of the full ranking when it was last computed (``best_known``): a new
    # evaluation of another run only needs comparing against it and the incumbent.
    best_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_known: Mapped[bool] = mapped_column(Boolean, default=False)
    # Settling: evaluations still to come for runs the policy's rules admit, and
    # since when a change of champion has been held back for them.
    pending_evaluations: Mapped[int] = mapped_column(Integer, default=0)
    held_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ChampionChange(Base):
    """One change of champion. Run ids are plain numbers so history outlives runs."""

    __tablename__ = "champion_history"
    __table_args__ = (Index("ix_champion_history_lookup", "environment_id", "model_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    from_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(NAME_LEN), default="")
    policy_revision: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token. Only the SHA-256 of its secret is stored: the secret is shown once.

    Secrets are 256 random bits, so a fast hash is enough (nothing to brute-force) and
    lets a request find its token with one lookup on a unique index.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    name_key: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the secret, to recognize a token in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME_LEN), default="")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)


class AuditEntry(Base):
    """One state-changing request: who, what, on what, before and after, why.

    Written in the same transaction as the change it records, so the log never
    shows a change that did not happen, nor misses one that did.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_target", "target", "id"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(NAME_LEN))
    role: Mapped[str] = mapped_column(String(16), default="")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
