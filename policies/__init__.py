"""The pure core of modelreg: versions, tolerances, policies and champion selection.

This package does no I/O. It imports only the standard library and ``packaging``:
no Flask, no SQLAlchemy, no clock, no files, nothing from ``service``. The service
layer loads data, calls :func:`modelreg.policies.selection.select`, and stores the
:class:`modelreg.policies.selection.Decision` it returns; ``explain`` and ``plan`` call the
very same function, so what is served, what is explained and what a dry run
predicts can never disagree. A test imports this package in a fresh interpreter
and checks ``sys.modules`` to keep it that way.
"""

from __future__ import annotations

from modelreg.policies.policy import STAGES, Direction, Policy, PolicyError, default_direction
from modelreg.policies.selection import (
    Assessment,
    Candidate,
    Decision,
    EvaluationJob,
    Reason,
    admits,
    select,
)
from modelreg.policies.versions import (
    InvalidVersionError,
    canonical_version,
    is_prerelease,
    normalize_version,
    parse_specifier,
    parse_version,
)

__all__ = [
    "STAGES",
    "Assessment",
    "Candidate",
    "Decision",
    "Direction",
    "EvaluationJob",
    "InvalidVersionError",
    "Policy",
    "PolicyError",
    "Reason",
    "admits",
    "canonical_version",
    "default_direction",
    "is_prerelease",
    "normalize_version",
    "parse_specifier",
    "parse_version",
    "select",
]
