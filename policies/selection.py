"""Champion selection: eligibility with reasons, ranking, hysteresis and pins.

:func:`select` is the one rule that decides which run an environment serves. It
is a pure function of its arguments and returns a :class:`Decision` value that
carries the champion, why it was chosen, and every candidate with the reasons it
is in or out. The stored champion, ``explain`` and ``plan`` all come from here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from packaging.version import Version

from modelreg.policies.policy import Policy
from modelreg.policies.versions import in_tolerance, parse_version

# A subtraction of two floats is off by a few units in the last place of the
# larger operand (0.9 - 0.8 == 0.09999999999999998). An improvement short of
# min_improvement by less than that is rounding, not a shortfall.
_ROUNDING_ULPS = 4 * sys.float_info.epsilon
# A reported value further than this from the verified one is flagged.
MISMATCH_TOLERANCE = 1e-6


class Reason(StrEnum):
    """Machine-readable codes: why a run is excluded, and why a champion was chosen."""

    VERSION_OUT_OF_RANGE = "version_out_of_range"
    PRERELEASE_NOT_ALLOWED = "prerelease_not_allowed"
    STAGE_NOT_ALLOWED = "stage_not_allowed"
    NOT_EVALUATED = "not_evaluated"
    UNVERIFIED = "unverified"
    BELOW_MIN_VALUE = "below_min_value"
    # The service's own evaluation of the run on the policy's revision failed (the
    # file is no loadable model, or it crashed, hung or ran out of memory).
    EVALUATION_FAILED = "evaluation_failed"
    FORMAT_NOT_ALLOWED = "format_not_allowed"

    # A warning, not an exclusion: the run's reported value disagrees with the
    # value the service computed itself (which is the one that counts).
    REPORTED_MISMATCH = "reported_mismatch"

    BEST = "best"
    INCUMBENT_KEPT = "incumbent_kept"
    PINNED = "pinned"
    NO_ELIGIBLE_MODEL = "no_eligible_model"


@dataclass(frozen=True)
class EvaluationJob:
    """The service's latest evaluation job of a run on the policy's dataset revision.

    ``state`` is ``pending``, ``running``, ``succeeded`` or ``failed``; ``error`` is
    what went wrong, when it failed.
    """

    job_id: int
    state: str
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.state == "failed"


@dataclass(frozen=True)
class Candidate:
    """One run as selection sees it.

    ``reported`` and ``verified`` are the run's values for the policy's metric on
    the policy's dataset revision (``None`` when there is none); ``job`` is the
    latest evaluation job on that revision (``None``: never scheduled, e.g. for a
    revision registered by digest only); ``artifact_format`` is the run's.
    """

    run_id: int
    version: str
    run_number: int
    stage: str
    reported: float | None = None
    verified: float | None = None
    job: EvaluationJob | None = None
    artifact_format: str | None = None


@dataclass(frozen=True)
class Assessment:
    """A candidate judged against a policy; ``rank`` is 1-based among eligible runs.

    ``reasons`` are why it is excluded (none: eligible); ``warnings`` never exclude.
    """

    candidate: Candidate
    value: float | None
    reasons: tuple[Reason, ...]
    rank: int | None = None
    warnings: tuple[Reason, ...] = ()

    @property
    def eligible(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`select`.

    ``ranked`` holds the eligible runs, best first; ``excluded`` the others, newest
    version first. ``champion`` is a run id, or ``None`` with reason
    ``no_eligible_model``.
    """

    champion: int | None
    reason: Reason
    ranked: tuple[Assessment, ...]
    excluded: tuple[Assessment, ...]

    @property
    def assessments(self) -> tuple[Assessment, ...]:
        return self.ranked + self.excluded

    def assessment(self, run_id: int) -> Assessment | None:
        return next((a for a in self.assessments if a.candidate.run_id == run_id), None)

    @property
    def champion_assessment(self) -> Assessment | None:
        return None if self.champion is None else self.assessment(self.champion)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def assess(policy: Policy, candidate: Candidate) -> Assessment:
    """Judge one candidate, listing *every* rule it fails.

    >>> p = Policy("<=1.0", ("Production",), "f1", "wine@1", min_value=0.5)
    >>> assess(p, Candidate(1, "1.0", 1, "Production", reported=0.9)).reasons
    ()
    >>> [str(r) for r in assess(p, Candidate(2, "2.0", 1, "Staging")).reasons]
    ['version_out_of_range', 'stage_not_allowed', 'not_evaluated']
    >>> [str(r) for r in assess(p, Candidate(3, "1.0rc1", 1, "Production", 0.4)).reasons]
    ['prerelease_not_allowed', 'below_min_value']

    A failed evaluation excludes a run that has no verified value, whatever
    ``require_verified`` says: its reported value does not stand in for it.

    >>> job = EvaluationJob(12, "failed", "UnpicklingError: invalid load key")
    >>> [str(r) for r in assess(p, Candidate(4, "1.0", 1, "Production", 1.0, job=job)).reasons]
    ['evaluation_failed']
    >>> assess(p, Candidate(5, "1.0", 1, "Production", 1.0, 0.8, job=job)).reasons
    ()
    >>> skops = Policy("", ("Production",), "f1", "wine@1", formats=("skops",))
    >>> c = Candidate(6, "1.0", 1, "Production", 0.9, artifact_format="joblib")
    >>> [str(r) for r in assess(skops, c).reasons]
    ['format_not_allowed']
    """
    c = candidate
    reasons: list[Reason] = []
    if not in_tolerance(policy.specifier, c.version, allow_prereleases=True):
        reasons.append(Reason.VERSION_OUT_OF_RANGE)
    elif not in_tolerance(policy.specifier, c.version, allow_prereleases=policy.allow_prereleases):
        reasons.append(Reason.PRERELEASE_NOT_ALLOWED)
    if c.stage not in policy.stages:
        reasons.append(Reason.STAGE_NOT_ALLOWED)
    if not policy.allows_format(c.artifact_format):
        reasons.append(Reason.FORMAT_NOT_ALLOWED)

    verified, reported = _finite(c.verified), _finite(c.reported)
    value = (
        verified if policy.require_verified else (verified if verified is not None else reported)
    )
    if verified is None and c.job is not None and c.job.failed:
        value = None
        reasons.append(Reason.EVALUATION_FAILED)
    elif value is None:
        unverified_only = policy.require_verified and reported is not None
        reasons.append(Reason.UNVERIFIED if unverified_only else Reason.NOT_EVALUATED)
    elif not policy.reaches_min_value(value):
        reasons.append(Reason.BELOW_MIN_VALUE)
    return Assessment(candidate=c, value=value, reasons=tuple(reasons), warnings=_warnings(c))


# The rules a run's version and stage answer, whatever its values.
RULES = frozenset(
    {
        Reason.VERSION_OUT_OF_RANGE,
        Reason.PRERELEASE_NOT_ALLOWED,
        Reason.STAGE_NOT_ALLOWED,
        Reason.FORMAT_NOT_ALLOWED,
    }
)


def admits(policy: Policy, version: str, stage: str, artifact_format: str | None = None) -> bool:
    """Whether the policy's rules let a run of this version, stage and format compete.

    Values are not looked at: this is the set of runs whose evaluations still to
    come a change of champion waits for (see ``settling``).

    >>> p = Policy("<=1.0", ("Production",), "f1", "wine@1")
    >>> admits(p, "1.0", "Production"), admits(p, "2.0", "Production")
    (True, False)
    >>> admits(p, "1.0", "Staging"), admits(p, "1.0rc1", "Production")
    (False, False)
    >>> admits(Policy("", ("Production",), "f1", "wine@1", formats=("skops",)), "1.0",
    ...        "Production", "joblib")
    False
    """
    candidate = Candidate(0, version, 0, stage, artifact_format=artifact_format)
    reasons = assess(policy, candidate).reasons
    return not RULES.intersection(reasons)


def _warnings(c: Candidate) -> tuple[Reason, ...]:
    """``reported_mismatch`` when both values exist and differ by more than 1e-6.

    >>> [str(w) for w in _warnings(Candidate(1, "1.0", 1, "Staging", 0.9, 0.8))]
    ['reported_mismatch']
    >>> _warnings(Candidate(1, "1.0", 1, "Staging", 0.9, 0.9 + 1e-7))
    ()
    >>> _warnings(Candidate(1, "1.0", 1, "Staging", 0.9))  # nothing verified to compare
    ()
    """
    verified, reported = _finite(c.verified), _finite(c.reported)
    if (
        verified is not None
        and reported is not None
        and abs(verified - reported) > MISMATCH_TOLERANCE
    ):
        return (Reason.REPORTED_MISMATCH,)
    return ()


def _rank_key(policy: Policy, a: Assessment) -> tuple[float, Version, int, int]:
    assert a.value is not None  # only eligible assessments are ranked
    directional = a.value if policy.maximize else -a.value
    c = a.candidate
    return (directional, parse_version(c.version), c.run_number, c.run_id)


def _beats(policy: Policy, challenger: float, incumbent: float) -> bool:
    """Whether ``challenger`` is better by at least ``min_improvement``, up to rounding.

    >>> p = Policy("", ("Staging",), "f1", "d@1", min_improvement=0.1)
    >>> _beats(p, 0.9, 0.8), _beats(p, 0.9, 0.81)
    (True, False)
    >>> _beats(Policy("", ("Staging",), "f1", "d@1", min_improvement=5e-13), 0.5, 0.5)
    False
    """
    gain = policy.improvement(challenger, incumbent)
    scale = max(abs(challenger), abs(incumbent), policy.min_improvement)
    return gain >= policy.min_improvement - _ROUNDING_ULPS * scale


def select(
    policy: Policy,
    candidates: Iterable[Candidate],
    *,
    incumbent: int | None = None,
    pin: int | None = None,
) -> Decision:
    """Choose the champion among ``candidates``.

    1. A pin wins if its run is among the candidates, eligible or not, unless its
       artifact format is one the policy does not allow: no override serves code
       the policy forbids to run.
    2. Eligible runs are ranked: better metric first, then higher version (PEP 440
       order), then higher run number.
    3. The incumbent stays while it is eligible and the best run does not beat it
       by at least ``min_improvement``.
    4. With no eligible run there is no champion.

    >>> p = Policy("<=1.0", ("Production",), "f1", "wine@1", min_improvement=0.02)
    >>> runs = [Candidate(1, "1.0", 1, "Production", 0.80),
    ...         Candidate(2, "1.0", 2, "Production", 0.81),
    ...         Candidate(3, "2.0", 1, "Staging", 0.99)]
    >>> d = select(p, runs)
    >>> d.champion, str(d.reason), [a.candidate.run_id for a in d.ranked]
    (2, 'best', [2, 1])
    >>> d = select(p, runs, incumbent=1)
    >>> d.champion, str(d.reason)
    (1, 'incumbent_kept')
    >>> d = select(p, runs, pin=3)
    >>> d.champion, str(d.reason), [str(r) for r in d.assessment(3).reasons]
    (3, 'pinned', ['version_out_of_range', 'stage_not_allowed'])
    >>> select(p, runs[2:]).champion is None
    True
    >>> skops = Policy("", ("Production",), "f1", "wine@1", formats=("skops",))
    >>> pickled = Candidate(4, "1.0", 1, "Production", 0.9, artifact_format="pickle")
    >>> select(skops, [pickled], pin=4).champion is None
    True
    """
    assessed = [assess(policy, c) for c in candidates]
    eligible = sorted(
        (a for a in assessed if a.eligible), key=lambda a: _rank_key(policy, a), reverse=True
    )
    ranked = tuple(
        Assessment(a.candidate, a.value, a.reasons, rank=i, warnings=a.warnings)
        for i, a in enumerate(eligible, 1)
    )
    excluded = tuple(
        sorted(
            (a for a in assessed if not a.eligible),
            key=lambda a: (
                parse_version(a.candidate.version),
                a.candidate.run_number,
                a.candidate.run_id,
            ),
            reverse=True,
        )
    )

    def decision(champion: int | None, reason: Reason) -> Decision:
        return Decision(champion=champion, reason=reason, ranked=ranked, excluded=excluded)

    pinned = next((a for a in assessed if a.candidate.run_id == pin), None)
    if pinned is not None and Reason.FORMAT_NOT_ALLOWED not in pinned.reasons:
        return decision(pin, Reason.PINNED)
    if not ranked:
        return decision(None, Reason.NO_ELIGIBLE_MODEL)

    best = ranked[0]
    held = next((a for a in ranked if a.candidate.run_id == incumbent), None)
    if held is not None and held is not best:
        assert best.value is not None and held.value is not None
        if not _beats(policy, best.value, held.value):
            return decision(held.candidate.run_id, Reason.INCUMBENT_KEPT)
    return decision(best.candidate.run_id, Reason.BEST)
