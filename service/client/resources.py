"""Typed results of the client: dataclasses built from the API's JSON documents.

Each keeps the whole document in ``raw``, so fields a newer server adds are never
lost; the typed fields are those of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T", bound="Resource")


@dataclass(frozen=True)
class Resource:
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in fields(cls)} - {"raw"}
        values = {k: v for k, v in data.items() if k in names}
        return cls(raw=dict(data), **values)


@dataclass(frozen=True)
class Version(Resource):
    model: str = ""
    version: str = ""
    stage: str = "None"
    canonical_version: str = ""
    is_prerelease: bool = False
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    # Only in the answer to create_version: how the version was written, when it is
    # stored in another spelling (its PEP 440 normal form).
    normalized_from: str | None = None


@dataclass(frozen=True)
class Model(Resource):
    name: str = ""
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    versions: tuple[Version, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        base = super().from_json({k: v for k, v in data.items() if k != "versions"})
        versions = tuple(Version.from_json(v) for v in data.get("versions") or ())
        return cls(**{**_values(base), "raw": dict(data), "versions": versions})


@dataclass(frozen=True)
class Evaluation(Resource):
    dataset: str = ""
    metric: str = ""
    value: float = 0.0
    source: str = "reported"
    created_at: str | None = None


@dataclass(frozen=True)
class Job(Resource):
    id: int = 0
    kind: str = "evaluate"
    run_id: int = 0
    dataset: str = ""
    state: str = "pending"
    trigger: str = ""
    actor: str = ""
    attempts: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class ModelEvaluation(Resource):
    """What :meth:`Registry.evaluate_model` queued: ``jobs`` new jobs (``job_ids``), and
    ``already_scored`` runs verified or with a job pending or running (``pending_job_ids``)."""

    model: str = ""
    dataset: str = ""
    versions: str = ""
    jobs: int = 0
    already_scored: int = 0
    job_ids: tuple[int, ...] = ()
    pending_job_ids: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelEvaluation:
        lists = ("job_ids", "pending_job_ids")
        base = super().from_json({k: v for k, v in data.items() if k not in lists})
        tuples = {k: tuple(int(i) for i in data.get(k) or ()) for k in lists}
        return cls(**{**_values(base), "raw": dict(data), **tuples})

    @property
    def waiting_for(self) -> tuple[int, ...]:
        """Every job this request leaves to finish: the new ones and those already queued."""
        return tuple(sorted({*self.job_ids, *self.pending_job_ids}))


@dataclass(frozen=True)
class Run(Resource):
    id: int = 0
    model: str = ""
    version: str = ""
    number: int = 0
    stage: str = ""
    artifact: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    evaluations: tuple[Evaluation, ...] = ()
    pending_jobs: tuple[Job, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        nested = ("evaluations", "pending_jobs")
        base = super().from_json({k: v for k, v in data.items() if k not in nested})
        return cls(
            **{
                **_values(base),
                "raw": dict(data),
                "evaluations": tuple(
                    Evaluation.from_json(e) for e in data.get("evaluations") or ()
                ),
                "pending_jobs": tuple(Job.from_json(j) for j in data.get("pending_jobs") or ()),
            }
        )

    @property
    def sha256(self) -> str:
        return str(self.artifact.get("sha256", ""))


@dataclass(frozen=True)
class DatasetRevision(Resource):
    dataset: str = ""
    revision: int = 0
    label: str = ""
    sha256: str = ""
    description: str = ""
    has_content: bool = False
    target: str | None = None
    task: str | None = None
    row_count: int | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class Dataset(Resource):
    name: str = ""
    revisions: tuple[DatasetRevision, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dataset:
        revisions = tuple(DatasetRevision.from_json(r) for r in data.get("revisions") or ())
        return cls(raw=dict(data), name=str(data.get("name", "")), revisions=revisions)


@dataclass(frozen=True)
class Champion(Resource):
    environment: str = ""
    model: str = ""
    version: str | None = None
    stage: str | None = None
    run_id: int | None = None
    run_number: int | None = None
    metric: dict[str, Any] = field(default_factory=dict)
    artifact: dict[str, Any] = field(default_factory=dict)
    selected_at: str | None = None
    reason: str = ""
    policy_revision: int = 0
    allowed_formats: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Champion:
        base = super().from_json({k: v for k, v in data.items() if k != "allowed_formats"})
        formats = tuple(data.get("allowed_formats") or ())
        return cls(**{**_values(base), "raw": dict(data), "allowed_formats": formats})

    @property
    def format(self) -> str | None:
        """The artifact's format (``joblib``, ``pickle``, ``skops``, ``onnx``, …)."""
        value = self.artifact.get("format")
        return None if value is None else str(value)

    @property
    def value(self) -> float | None:
        value = self.metric.get("value")
        return None if value is None else float(value)

    @property
    def sha256(self) -> str:
        return str(self.artifact.get("sha256") or "")


@dataclass(frozen=True)
class Environment(Resource):
    name: str = ""
    description: str = ""
    champions: tuple[Champion, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Environment:
        champions = tuple(Champion.from_json(c) for c in data.get("champions") or ())
        return cls(
            raw=dict(data),
            name=str(data.get("name", "")),
            description=str(data.get("description", "")),
            champions=champions,
        )


@dataclass(frozen=True)
class Pin(Resource):
    """A release engineer's override: ``run_id`` is served whatever the ranking."""

    environment: str = ""
    model: str = ""
    run_id: int | None = None
    reason: str = ""
    actor: str = ""
    pinned_at: str | None = None
    champion: Champion | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pin:
        base = super().from_json({k: v for k, v in data.items() if k != "champion"})
        served = data.get("champion")
        champion = Champion.from_json(served) if served else None
        return cls(**{**_values(base), "raw": dict(data), "champion": champion})


@dataclass(frozen=True)
class Policy(Resource):
    environment: str = ""
    model: str = ""
    versions: str = ""
    stages: tuple[str, ...] = ()
    metric: str = ""
    dataset: str = ""
    direction: str = ""
    min_value: float | None = None
    min_improvement: float = 0.0
    allow_prereleases: bool = False
    require_verified: bool = False
    formats: tuple[str, ...] = ()
    revision: int = 0
    reason: str = ""
    updated_by: str = ""
    updated_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        base = super().from_json({k: v for k, v in data.items() if k not in ("stages", "formats")})
        return cls(
            **{
                **_values(base),
                "raw": dict(data),
                "stages": tuple(data.get("stages") or ()),
                "formats": tuple(data.get("formats") or ()),
            }
        )

    @property
    def champion(self) -> Champion | None:
        """After a PUT: the environment's champion (``None`` when there is none)."""
        doc = self.raw.get("champion")
        return Champion.from_json(doc) if isinstance(doc, dict) else None

    @property
    def champion_changed(self) -> bool:
        return bool(self.raw.get("champion_changed"))


@dataclass(frozen=True)
class Plan(Resource):
    current: Champion | None = None
    proposed: Champion | None = None
    changes: bool = False
    eligible_count: int = 0
    would_leave_no_model: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        def champ(key: str) -> Champion | None:
            doc = data.get(key)
            return Champion.from_json(doc) if isinstance(doc, dict) else None

        return cls(
            raw=dict(data),
            current=champ("current"),
            proposed=champ("proposed"),
            changes=bool(data.get("changes")),
            eligible_count=int(data.get("eligible_count") or 0),
            would_leave_no_model=bool(data.get("would_leave_no_model")),
        )


@dataclass(frozen=True)
class Candidate(Resource):
    run_id: int = 0
    version: str = ""
    run_number: int = 0
    stage: str = ""
    value: float | None = None
    eligible: bool = False
    rank: int | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    reported: float | None = None
    verified: float | None = None
    format: str | None = None
    # The latest evaluation job on the policy's revision: {job_id, state, error}, or None.
    evaluation: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        lists = ("reasons", "warnings")
        base = super().from_json({k: v for k, v in data.items() if k not in lists})
        tuples = {k: tuple(data.get(k) or ()) for k in lists}
        return cls(**{**_values(base), "raw": dict(data), **tuples})


@dataclass(frozen=True)
class Explanation(Resource):
    environment: str = ""
    model: str = ""
    champion: int | None = None
    reason: str = ""
    policy_revision: int = 0
    metric: str = ""
    dataset: str = ""
    candidates: tuple[Candidate, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        base = super().from_json({k: v for k, v in data.items() if k != "candidates"})
        candidates = tuple(Candidate.from_json(c) for c in data.get("candidates") or ())
        return cls(**{**_values(base), "raw": dict(data), "candidates": candidates})


@dataclass(frozen=True)
class HistoryItem(Resource):
    from_run_id: int | None = None
    to_run_id: int | None = None
    reason: str = ""
    trigger: str = ""
    detail: str = ""
    actor: str = ""
    policy_revision: int = 0
    at: str | None = None


@dataclass(frozen=True)
class Outcome(Resource):
    """What a change did to one environment's champion."""

    environment: str = ""
    model: str = ""
    before: int | None = None
    after: int | None = None
    reason: str = ""
    changed: bool = False


@dataclass(frozen=True)
class Token(Resource):
    id: int = 0
    name: str = ""
    role: str = ""
    state: str = ""
    prefix: str = ""
    secret: str | None = field(default=None, repr=False)  # only when just created
    expires_at: str | None = None


@dataclass(frozen=True)
class AuditEntry(Resource):
    id: int = 0
    at: str | None = None
    actor: str = ""
    role: str = ""
    action: str = ""
    target: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str = ""
    request_id: str = ""


def _values(resource: Resource) -> dict[str, Any]:
    return {f.name: getattr(resource, f.name) for f in fields(resource)}
