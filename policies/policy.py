"""The per-(environment, model) policy: which runs may serve, and how to rank them.

A :class:`Policy` is parsed and checked when it is built and cannot change
afterwards; an invalid field raises :class:`PolicyError` (a ``ValueError``) that
names the field, so the service can answer 422 with that field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from packaging.specifiers import SpecifierSet

from modelreg.policies.stages import STAGES
from modelreg.policies.versions import InvalidVersionError, parse_specifier

Direction = Literal["max", "min"]

_MAX_EXACT = frozenset({"accuracy", "roc_auc", "r2"})
_MAX_PREFIXES = ("f1", "precision", "recall")
_MIN_EXACT = frozenset({"rmse", "mae", "mse", "log_loss"})


_PINNED_DATASET = re.compile(r"[^@\s]+@[1-9][0-9]*")
# An artifact format as runs record it (``joblib``, ``pickle``, ``skops``, ``onnx``, …):
# at most 32 characters, like the run's ``format`` column.
_FORMAT = re.compile(r"[a-z0-9][a-z0-9._+-]{0,31}")


def _is_finite_number(value: object) -> bool:
    # bool is an int subclass, but True is no threshold.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class PolicyError(ValueError):
    """A policy field that is not acceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def default_direction(metric: str) -> Direction | None:
    """The direction in which ``metric`` improves, when its name says so.

    Names are matched case-insensitively; ``f1*``, ``precision*`` and ``recall*``
    cover their averaged variants. An unknown metric has no default: the policy
    must state its direction.

    >>> [default_direction(m) for m in ("accuracy", "f1_macro", "F1", "roc_auc", "r2")]
    ['max', 'max', 'max', 'max', 'max']
    >>> [default_direction(m) for m in ("rmse", "mae", "mse", "log_loss")]
    ['min', 'min', 'min', 'min']
    >>> default_direction("latency_ms") is None
    True
    """
    name = metric.lower()
    if name in _MAX_EXACT or name.startswith(_MAX_PREFIXES):
        return "max"
    if name in _MIN_EXACT:
        return "min"
    return None


def _formats(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list | frozenset | set):
        raise PolicyError("formats", f"must be a list of artifact formats, not {value!r}")
    bad = [f for f in value if not isinstance(f, str) or not _FORMAT.fullmatch(f.lower())]
    if bad:
        raise PolicyError(
            "formats", f"not artifact format names: {bad!r} (e.g. skops, onnx, joblib, pickle)"
        )
    return tuple(sorted({f.lower() for f in value}))


@dataclass(frozen=True)
class Policy:
    """Which runs an environment may serve for one model, and how to rank them.

    ``dataset`` is a pinned revision label such as ``wine-holdout@3``; the caller
    resolves ``wine-holdout`` to its latest revision before building the policy.

    >>> p = Policy(versions="<=1.0", stages=("Production",), metric="f1",
    ...            dataset="wine-holdout@1")
    >>> p.direction, p.min_improvement, p.allow_prereleases
    ('max', 0.0, False)
    >>> try:
    ...     Policy(versions="<=1.0", stages=("Production",), metric="latency", dataset="d@1")
    ... except PolicyError as e:
    ...     print(e)
    direction: no default for metric 'latency'; give "max" or "min"
    >>> Policy(versions="<=x", stages=("Production",), metric="f1", dataset="d@1")
    Traceback (most recent call last):
    ...
    modelreg.policies.policy.PolicyError: versions: invalid version specifier: '<=x'

    ``formats`` lists the artifact formats a run may have; empty: any format. Names
    are compared case-insensitively and kept lower case, sorted, without duplicates.

    >>> Policy("", ("Production",), "f1", "d@1", formats=("SKOPS", "onnx")).formats
    ('onnx', 'skops')
    """

    versions: str
    stages: tuple[str, ...]
    metric: str
    dataset: str
    direction: Direction | None = None
    min_value: float | None = None
    min_improvement: float = 0.0
    allow_prereleases: bool = False
    require_verified: bool = False
    formats: tuple[str, ...] = ()
    specifier: SpecifierSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            spec = parse_specifier(self.versions)
        except InvalidVersionError as exc:
            raise PolicyError("versions", str(exc)) from None
        object.__setattr__(self, "versions", str(spec))
        object.__setattr__(self, "specifier", spec)

        if isinstance(self.stages, str):
            raise PolicyError("stages", f"must be a list of stages, not the string {self.stages!r}")
        stages = tuple(self.stages)
        if not stages:
            raise PolicyError("stages", "at least one stage is required")
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise PolicyError("stages", f"unknown stage(s) {unknown}; known: {list(STAGES)}")
        # Keep stage order canonical so two equal policies compare equal.
        object.__setattr__(self, "stages", tuple(s for s in STAGES if s in stages))

        if not isinstance(self.metric, str) or not self.metric.strip():
            raise PolicyError("metric", "a metric name is required")
        object.__setattr__(self, "metric", self.metric.strip())
        if not isinstance(self.dataset, str) or not _PINNED_DATASET.fullmatch(self.dataset):
            raise PolicyError(
                "dataset", f"must be a pinned revision such as 'holdout@3', not {self.dataset!r}"
            )

        direction = default_direction(self.metric) if self.direction is None else self.direction
        if direction is None:
            raise PolicyError(
                "direction",
                f'no default for metric {self.metric!r}; give "max" or "min"',
            )
        if direction not in ("max", "min"):
            raise PolicyError("direction", f'must be "max" or "min", not {direction!r}')
        object.__setattr__(self, "direction", direction)

        object.__setattr__(self, "formats", _formats(self.formats))

        if self.min_value is not None and not _is_finite_number(self.min_value):
            raise PolicyError("min_value", "must be a finite number")
        if not _is_finite_number(self.min_improvement) or self.min_improvement < 0:
            raise PolicyError("min_improvement", "must be a finite number >= 0")

    def allows_format(self, artifact_format: str | None) -> bool:
        """Whether a run whose artifact has ``artifact_format`` may serve.

        >>> p = Policy("", ("Staging",), "f1", "d@1", formats=("skops",))
        >>> p.allows_format("skops"), p.allows_format("joblib"), p.allows_format(None)
        (True, False, False)
        >>> Policy("", ("Staging",), "f1", "d@1").allows_format("pickle")  # no list: any
        True
        """
        if not self.formats:
            return True
        return artifact_format is not None and artifact_format.lower() in self.formats

    @property
    def maximize(self) -> bool:
        return self.direction == "max"

    def reaches_min_value(self, value: float) -> bool:
        """Whether ``value`` reaches the threshold, in the policy's direction.

        For a metric to minimize, ``min_value`` is the worst acceptable value, so
        it is an upper bound.

        >>> Policy("", ("Staging",), "f1", "d@1", min_value=0.8).reaches_min_value(0.8)
        True
        >>> Policy("", ("Staging",), "rmse", "d@1", min_value=3.0).reaches_min_value(3.5)
        False
        """
        if self.min_value is None:
            return True
        return value >= self.min_value if self.maximize else value <= self.min_value

    def improvement(self, challenger: float, incumbent: float) -> float:
        """How much better ``challenger`` is than ``incumbent`` (negative if worse).

        >>> Policy("", ("Staging",), "rmse", "d@1").improvement(2.0, 2.5)
        0.5
        """
        return challenger - incumbent if self.maximize else incumbent - challenger


__all__ = ["STAGES", "Direction", "Policy", "PolicyError", "default_direction"]
