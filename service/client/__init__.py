"""Python client of the modelreg API, for CI, release engineers and serving layers.

The base install has it: ``pip install modelreg`` (no extra). It needs only
``requests`` (and ``joblib`` when handed an estimator object, ``skops`` or
``onnxruntime`` for those formats); importing it imports nothing of the server: no
Flask, no SQLAlchemy (``modelreg[server]`` is the server). ``Registry`` has a method
for every API operation and returns dataclasses; every API error is raised as a
:class:`RegistryError` subclass carrying the JSON error (``NotFound``,
``Conflict``, …). ``Registry(url, token, session=...)`` sends through a
``requests.Session`` of the caller's (its adapters, proxies, certificates).
``ChampionLoader`` is the serving layers' cached, verified, outage-tolerant loader.
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
