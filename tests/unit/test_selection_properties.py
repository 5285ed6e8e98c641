"""Properties of champion selection that must hold for any policy and any candidates.

Eligibility is re-derived here from DESIGN.md, "Selection rules", with ``packaging``
directly (``satisfies`` below), independently of ``modelreg.policies.selection``.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from modelreg.policies.policy import STAGES, Policy
from modelreg.policies.selection import Candidate, Decision, Reason, select

# No example database: nothing is written outside tests/unit.
SETTINGS = settings(
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)

VERSIONS = ["0.9", "1.0", "1.0.0", "1.0rc1", "1.5", "1.10", "1.9", "2.0rc1", "2.0", "10.0"]
SPECIFIERS = ["", "<=1.0", "<=2.0", ">=1.0,<2", ">1.0", "==1.0", "!=1.5", ">=2.0rc1", "~=1.0"]
METRICS = {"max": ["f1", "accuracy", "roc_auc", "throughput"], "min": ["rmse", "mae", "latency"]}
# A few repeated values make ties (and tie-breaking) common.
VALUES = st.one_of(
    st.sampled_from([0.0, 0.2, 0.5, 0.8, 0.9, 1.0]),
    st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False),
)


@st.composite
def policies(draw, direction=None, min_improvement=None):
    direction = direction or draw(st.sampled_from(["max", "min"]))
    return Policy(
        versions=draw(st.sampled_from(SPECIFIERS)),
        stages=tuple(draw(st.sets(st.sampled_from(STAGES), min_size=1))),
        metric=draw(st.sampled_from(METRICS[direction])),
        dataset="holdout@1",
        direction=direction,
        min_value=draw(st.none() | VALUES),
        min_improvement=(
            draw(st.sampled_from([0.0, 0.05, 0.1, 0.5]) | st.floats(0, 2))
            if min_improvement is None
            else min_improvement
        ),
        allow_prereleases=draw(st.booleans()),
        require_verified=draw(st.booleans()),
    )


@st.composite
def candidate_lists(draw, policy, min_size=0):
    """Runs with unique ids; stages lean towards the policy's so that some are eligible."""
    size = draw(st.integers(min_value=min_size, max_value=8))
    ids = draw(st.lists(st.integers(1, 50), min_size=size, max_size=size, unique=True))
    stages = st.sampled_from(policy.stages) | st.sampled_from(STAGES)
    return [
        Candidate(
            run_id=run_id,
            version=draw(st.sampled_from(VERSIONS)),
            run_number=draw(st.integers(1, 3)),
            stage=draw(stages),
            reported=draw(st.none() | VALUES),
            verified=draw(st.none() | VALUES),
        )
        for run_id in ids
    ]


@st.composite
def scenarios(draw, direction=None, min_improvement=None, min_size=0):
    """A policy and candidate runs for it."""
    policy = draw(policies(direction=direction, min_improvement=min_improvement))
    return policy, draw(candidate_lists(policy, min_size=min_size))


def other_id(ids):
    """A run id (or None) that names no candidate."""
    return st.sampled_from([None, max(ids, default=0) + 1])


def some_id(ids):
    """None, a candidate's id, or an id that names no candidate."""
    return st.one_of(st.none(), st.sampled_from(sorted(ids) or [1]), st.just(1000))


# -- an independent oracle -------------------------------------------------------------


def effective_value(policy: Policy, c: Candidate) -> float | None:
    def finite(x):
        return x if x is not None and math.isfinite(x) else None

    if policy.require_verified:
        return finite(c.verified)
    return finite(c.verified) if finite(c.verified) is not None else finite(c.reported)


def satisfies(policy: Policy, c: Candidate) -> bool:
    spec = SpecifierSet(policy.versions)
    if not spec.contains(Version(c.version), prereleases=policy.allow_prereleases):
        return False
    if c.stage not in policy.stages:
        return False
    value = effective_value(policy, c)
    if value is None:
        return False
    if policy.min_value is None:
        return True
    return value >= policy.min_value if policy.direction == "max" else value <= policy.min_value


def better(policy: Policy, a: float, b: float) -> bool:
    return a > b if policy.direction == "max" else a < b


def ids_of(assessments) -> list[int]:
    return [a.candidate.run_id for a in assessments]


def summary(d: Decision) -> tuple:
    return d.champion, d.reason, ids_of(d.ranked), ids_of(d.excluded)


# -- properties ------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), scenario=scenarios(min_size=1))
def test_a_champion_that_is_not_pinned_satisfies_every_rule_of_the_policy(data, scenario):
    policy, candidates = scenario
    ids = {c.run_id for c in candidates}
    decision = select(
        policy, candidates, incumbent=data.draw(some_id(ids)), pin=data.draw(some_id(ids))
    )
    assume(decision.champion is not None and decision.reason != Reason.PINNED)

    assessment = decision.champion_assessment
    c = assessment.candidate
    assert assessment.reasons == ()
    assert SpecifierSet(policy.versions).contains(
        Version(c.version), prereleases=policy.allow_prereleases
    )
    assert c.stage in policy.stages
    assert assessment.value == effective_value(policy, c)
    assert satisfies(policy, c)
    assert decision.reason in (Reason.BEST, Reason.INCUMBENT_KEPT)


@SETTINGS
@given(data=st.data(), scenario=scenarios())
def test_exactly_the_runs_that_satisfy_the_policy_are_ranked_one_to_n(data, scenario):
    policy, candidates = scenario
    ids = {c.run_id for c in candidates}
    decision = select(
        policy, candidates, incumbent=data.draw(some_id(ids)), pin=data.draw(some_id(ids))
    )

    assert set(ids_of(decision.ranked)) == {c.run_id for c in candidates if satisfies(policy, c)}
    assert sorted(ids_of(decision.assessments)) == sorted(ids)
    assert [a.rank for a in decision.ranked] == list(range(1, len(decision.ranked) + 1))
    assert all(a.reasons for a in decision.excluded)


@SETTINGS
@given(scenario=scenarios())
def test_ranked_runs_are_ordered_by_metric_then_version_then_run_number(scenario):
    policy, candidates = scenario
    ranked = select(policy, candidates).ranked
    for hi, lo in itertools.pairwise(ranked):
        assert not better(policy, lo.value, hi.value)
        if lo.value == hi.value:
            hi_key = (Version(hi.candidate.version), hi.candidate.run_number)
            lo_key = (Version(lo.candidate.version), lo.candidate.run_number)
            assert hi_key >= lo_key


@SETTINGS
@given(data=st.data(), scenario=scenarios())
def test_the_decision_does_not_depend_on_the_order_of_the_candidates(data, scenario):
    policy, candidates = scenario
    ids = {c.run_id for c in candidates}
    incumbent, pin = data.draw(some_id(ids)), data.draw(some_id(ids))
    shuffled = data.draw(st.permutations(candidates))

    original = select(policy, candidates, incumbent=incumbent, pin=pin)
    reordered = select(policy, shuffled, incumbent=incumbent, pin=pin)

    assert summary(reordered) == summary(original)


@pytest.mark.parametrize("direction", ["max", "min"])
@pytest.mark.parametrize("with_incumbent", [False, True])
@SETTINGS
@given(data=st.data())
def test_adding_a_run_strictly_worse_than_the_champion_never_changes_the_champion(
    direction, with_incumbent, data
):
    policy, candidates = data.draw(scenarios(direction=direction, min_size=1))
    ids = {c.run_id for c in candidates}
    incumbent = data.draw(st.sampled_from(sorted(ids))) if with_incumbent else None
    before = select(policy, candidates, incumbent=incumbent)
    assume(before.champion is not None)

    champion_value = before.champion_assessment.value
    gap = data.draw(st.floats(min_value=1e-3, max_value=5))
    worse = champion_value - gap if direction == "max" else champion_value + gap
    assert better(policy, champion_value, worse)
    # The worse value is the one that counts: reported alone, or verified (which wins).
    reported, verified = data.draw(
        st.sampled_from([(worse, None), (None, worse)]) | st.tuples(VALUES, st.just(worse))
    )
    newcomer = Candidate(
        run_id=max(ids) + 1,
        version=data.draw(st.sampled_from(VERSIONS)),
        run_number=data.draw(st.integers(1, 3)),
        stage=data.draw(st.sampled_from(STAGES)),
        reported=reported,
        verified=verified,
    )
    position = data.draw(st.integers(0, len(candidates)))
    after = select(
        policy, [*candidates[:position], newcomer, *candidates[position:]], incumbent=incumbent
    )

    assert after.champion == before.champion
    assert after.reason == before.reason


@SETTINGS
@given(data=st.data(), scenario=scenarios())
def test_there_is_no_champion_exactly_when_no_run_is_eligible_and_no_pin_is_valid(data, scenario):
    policy, candidates = scenario
    ids = {c.run_id for c in candidates}
    pin = data.draw(some_id(ids))
    decision = select(policy, candidates, incumbent=data.draw(some_id(ids)), pin=pin)

    nothing_eligible = not any(satisfies(policy, c) for c in candidates)
    if nothing_eligible and pin not in ids:
        assert decision.champion is None
        assert decision.reason == Reason.NO_ELIGIBLE_MODEL
    else:
        assert decision.champion is not None
        assert decision.reason != Reason.NO_ELIGIBLE_MODEL


@SETTINGS
@given(data=st.data(), scenario=scenarios(min_improvement=0.0))
def test_without_hysteresis_or_pin_the_champion_is_the_top_ranked_run(data, scenario):
    policy, candidates = scenario
    ids = {c.run_id for c in candidates}
    incumbent = data.draw(some_id(ids))
    decision = select(policy, candidates, incumbent=incumbent, pin=data.draw(other_id(ids)))

    expected = decision.ranked[0].candidate.run_id if decision.ranked else None
    assert decision.champion == expected


@SETTINGS
@given(data=st.data(), scenario=scenarios(min_size=1))
def test_an_unpinned_champion_is_the_best_run_or_the_incumbent(data, scenario):
    policy, candidates = scenario
    ids = {c.run_id for c in candidates}
    incumbent = data.draw(some_id(ids))
    decision = select(policy, candidates, incumbent=incumbent)
    assume(decision.champion is not None)

    if decision.reason == Reason.INCUMBENT_KEPT:
        assert decision.champion == incumbent
        best, held = decision.ranked[0].value, decision.champion_assessment.value
        assert policy.improvement(best, held) < policy.min_improvement + 1e-9
    else:
        assert decision.reason == Reason.BEST
        assert decision.champion == decision.ranked[0].candidate.run_id
        held = next((a for a in decision.ranked if a.candidate.run_id == incumbent), None)
        if held is not None and held is not decision.ranked[0]:
            gain = policy.improvement(decision.ranked[0].value, held.value)
            assert gain > policy.min_improvement - 1e-9
