"""Stages a version moves through, and which moves are allowed.

>>> can_transition("None", "Staging"), can_transition("Staging", "Production")
(True, True)
>>> can_transition("None", "Production")
False
>>> can_transition("Archived", "Archived")
False
"""

from __future__ import annotations

STAGES: tuple[str, ...] = ("None", "Staging", "Production", "Archived")

ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("None", "Staging"),
        ("None", "Archived"),
        ("Staging", "Production"),
        ("Staging", "Archived"),
        ("Staging", "None"),
        ("Production", "Staging"),
        ("Production", "Archived"),
        ("Archived", "Staging"),
    }
)


def can_transition(current: str, target: str) -> bool:
    """Whether a version in stage ``current`` may move to ``target``."""
    return (current, target) in ALLOWED_TRANSITIONS


def allowed_targets(current: str) -> list[str]:
    """The stages reachable from ``current`` in one move, in stage order.

    >>> allowed_targets("Staging")
    ['None', 'Production', 'Archived']
    >>> allowed_targets("Archived")
    ['Staging']
    """
    return [s for s in STAGES if (current, s) in ALLOWED_TRANSITIONS]
