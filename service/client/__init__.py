"""Python client of the modelreg API, for CI, release engineers and serving layers.

Needs only ``requests`` (and ``joblib`` when handed an estimator object); importing
it imports neither Flask nor SQLAlchemy. ``Registry`` has a method for every API
operation and returns dataclasses; every API error is raised as a
:class:`RegistryError` subclass carrying the JSON error (``NotFound``,
``Conflict``, …). ``ChampionLoader`` is the serving layers' cached, verified,
outage-tolerant loader.
"""

from __future__ import annotations

from modelreg.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    FormatNotAllowed,
    NoEligibleModel,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PreconditionRequired,
    RegistryError,
    ServerError,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    Unreachable,
    UnsupportedMediaType,
    ValidationError,
)
from modelreg.client.loader import ChampionLoader
from modelreg.client.registry import Registry
from modelreg.client.resources import (
    AuditEntry,
    Candidate,
    Champion,
    Dataset,
    DatasetRevision,
    Environment,
    Evaluation,
    Explanation,
    HistoryItem,
    Job,
    Model,
    ModelEvaluation,
    Outcome,
    Pin,
    Plan,
    Policy,
    Run,
    Token,
    Version,
)

__all__ = [
    "AuditEntry",
    "BadRequest",
    "Candidate",
    "Champion",
    "ChampionLoader",
    "Conflict",
    "Dataset",
    "DatasetRevision",
    "Environment",
    "Evaluation",
    "Explanation",
    "Forbidden",
    "FormatNotAllowed",
    "HistoryItem",
    "Job",
    "Model",
    "ModelEvaluation",
    "NoEligibleModel",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "Pin",
    "Plan",
    "Policy",
    "PreconditionFailed",
    "PreconditionRequired",
    "Registry",
    "RegistryError",
    "Run",
    "ServerError",
    "Token",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "Unreachable",
    "UnsupportedMediaType",
    "ValidationError",
    "Version",
]
