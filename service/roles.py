"""Roles and who may do what. Pure: no Flask, no database.

Roles are ordered: every role may do what the roles before it may.

- ``reader``: serving layers — every GET, artifact downloads (dataset content, the
  test set's labels, is ``admin`` only).
- ``ci``: also registers models, versions, runs, datasets and evaluations, and moves
  versions between ``None`` and ``Staging``.
- ``release``: also environments, policies, pins, run removal, every transition, and
  reading the audit trail.
- ``admin``: everything, tokens included.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ROLES = ("reader", "ci", "release", "admin")

# The transitions CI may make; every other one needs ``release``.
_CI_TRANSITIONS = {("None", "Staging"), ("Staging", "None")}


@dataclass(frozen=True)
class Caller:
    """Who is making a request: the token's name and role, and the request's id."""

    name: str
    role: str
    request_id: str = ""


def allows(role: str, required: str) -> bool:
    """Whether ``role`` may do what needs ``required``.

    >>> allows("admin", "release"), allows("ci", "ci"), allows("reader", "ci")
    (True, True, False)
    >>> allows("root", "reader")
    False
    """
    if role not in ROLES or required not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(required)


def transition_role(from_stage: str, to_stage: str) -> str:
    """The role a stage transition needs.

    >>> transition_role("None", "Staging"), transition_role("Staging", "Production")
    ('ci', 'release')
    >>> transition_role("Staging", "None"), transition_role("None", "Archived")
    ('ci', 'release')
    """
    return "ci" if (from_stage, to_stage) in _CI_TRANSITIONS else "release"


def secret_digest(secret: str) -> str:
    """The stored form of a token's secret (the HTTP layer looks tokens up by it).

    >>> secret_digest("mr_x") == hashlib.sha256(b"mr_x").hexdigest()
    True
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
