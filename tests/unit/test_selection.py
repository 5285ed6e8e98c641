"""Champion selection (``modelreg.policies.selection``), table by table.

Each expectation follows from DESIGN.md, "Selection rules": pins, eligibility with one
reason code per failed rule, ranking (metric, then PEP 440 version, then run number),
hysteresis, and "no eligible run -> no champion".
"""

from __future__ import annotations

import math

import pytest

from modelreg.policies.policy import Policy
from modelreg.policies.selection import Candidate, Decision, EvaluationJob, Reason, select


def policy(**overrides: object) -> Policy:
    fields: dict[str, object] = {
        "versions": "<=1.0",
        "stages": ("Production",),
        "metric": "f1",
        "dataset": "wine-holdout@3",
    }
    fields.update(overrides)
    return Policy(**fields)  # type: ignore[arg-type]


def run(
    run_id: int,
    version: str = "1.0",
    number: int = 1,
    stage: str = "Production",
    reported: float | None = None,
    verified: float | None = None,
) -> Candidate:
    return Candidate(run_id, version, number, stage, reported=reported, verified=verified)


def reasons_of(decision: Decision, run_id: int) -> set[str]:
    assessment = decision.assessment(run_id)
    assert assessment is not None
    return {str(r) for r in assessment.reasons}


def ranked_ids(decision: Decision) -> list[int]:
    return [a.candidate.run_id for a in decision.ranked]


def excluded_ids(decision: Decision) -> set[int]:
    return {a.candidate.run_id for a in decision.excluded}


# -- eligibility and reason codes ------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "candidate", "expected"),
    [
        pytest.param({}, run(1, reported=0.9), set(), id="eligible"),
        pytest.param(
            {}, run(1, "1.1", reported=0.9), {"version_out_of_range"}, id="version-above-bound"
        ),
        pytest.param(
            {}, run(1, "1.0.post1", reported=0.9), {"version_out_of_range"}, id="post-release"
        ),
        pytest.param({}, run(1, "1.0.0", reported=0.9), set(), id="equal-spelling-of-bound"),
        pytest.param({}, run(1, "1.0+build7", reported=0.9), set(), id="local-version"),
        pytest.param(
            {}, run(1, "1.0rc1", reported=0.9), {"prerelease_not_allowed"}, id="prerelease"
        ),
        pytest.param(
            {}, run(1, "1.0.dev3", reported=0.9), {"prerelease_not_allowed"}, id="dev-release"
        ),
        pytest.param(
            {"allow_prereleases": True},
            run(1, "1.0rc1", reported=0.9),
            set(),
            id="prerelease-allowed",
        ),
        pytest.param(
            {"allow_prereleases": True},
            run(1, "2.0rc1", reported=0.9),
            {"version_out_of_range"},
            id="prerelease-allowed-but-out-of-range",
        ),
        pytest.param(
            {},
            run(1, "2.0rc1", reported=0.9),
            {"version_out_of_range"},
            id="prerelease-out-of-range-is-only-out-of-range",
        ),
        pytest.param(
            {"versions": ""},
            run(1, "3.0rc1", reported=0.9),
            {"prerelease_not_allowed"},
            id="empty-specifier-still-refuses-prereleases",
        ),
        pytest.param(
            {"versions": ""}, run(1, "99.0", reported=0.9), set(), id="empty-specifier-any"
        ),
        pytest.param({}, run(1, stage="Staging", reported=0.9), {"stage_not_allowed"}, id="stage"),
        pytest.param({}, run(1, stage="None", reported=0.9), {"stage_not_allowed"}, id="none"),
        pytest.param(
            {"stages": ("Staging", "Production")},
            run(1, stage="Staging", reported=0.9),
            set(),
            id="one-of-several-stages",
        ),
        pytest.param({}, run(1), {"not_evaluated"}, id="no-value"),
        pytest.param(
            {"require_verified": True}, run(1, reported=0.9), {"unverified"}, id="unverified"
        ),
        pytest.param(
            {"require_verified": True},
            run(1),
            {"not_evaluated"},
            id="required-verified-and-no-value-at-all",
        ),
        pytest.param(
            {"require_verified": True},
            run(1, reported=0.9, verified=0.85),
            set(),
            id="verified",
        ),
        pytest.param(
            {"min_value": 0.8}, run(1, reported=0.79), {"below_min_value"}, id="below-min"
        ),
        pytest.param({"min_value": 0.8}, run(1, reported=0.8), set(), id="exactly-min"),
        pytest.param(
            {"min_value": 0.8},
            run(1, reported=0.95, verified=0.7),
            {"below_min_value"},
            id="min-value-checks-the-verified-value",
        ),
        pytest.param(
            {"metric": "rmse", "min_value": 3.0},
            run(1, reported=3.5),
            {"below_min_value"},
            id="rmse-worse-than-threshold",
        ),
        pytest.param(
            {"metric": "rmse", "min_value": 3.0},
            run(1, reported=2.0),
            set(),
            id="rmse-better-than-threshold",
        ),
        # several failed rules at once: every one is listed
        pytest.param(
            {},
            run(1, "2.0", stage="Staging"),
            {"version_out_of_range", "stage_not_allowed", "not_evaluated"},
            id="out-of-range-wrong-stage-not-evaluated",
        ),
        pytest.param(
            {"min_value": 0.5},
            run(1, "1.0rc1", stage="Archived", reported=0.1),
            {"prerelease_not_allowed", "stage_not_allowed", "below_min_value"},
            id="prerelease-wrong-stage-below-min",
        ),
        pytest.param(
            {"require_verified": True},
            run(1, "1.5", stage="None", reported=0.9),
            {"version_out_of_range", "stage_not_allowed", "unverified"},
            id="out-of-range-wrong-stage-unverified",
        ),
        pytest.param(
            {"require_verified": True, "min_value": 0.9},
            run(1, "1.0a1", stage="Staging", reported=0.95, verified=0.5),
            {"prerelease_not_allowed", "stage_not_allowed", "below_min_value"},
            id="verified-value-below-min-with-other-failures",
        ),
    ],
)
def test_every_failed_rule_gives_its_reason_code(overrides, candidate, expected):
    decision = select(policy(**overrides), [candidate])

    assert reasons_of(decision, candidate.run_id) == expected
    assessment = decision.assessment(candidate.run_id)
    assert assessment is not None
    assert assessment.eligible is (not expected)
    if expected:
        assert excluded_ids(decision) == {candidate.run_id}
        assert decision.champion is None
    else:
        assert ranked_ids(decision) == [candidate.run_id]
        assert decision.champion == candidate.run_id


def test_reason_codes_are_the_strings_of_the_design():
    assert {str(r) for r in Reason} == {
        "version_out_of_range",
        "prerelease_not_allowed",
        "stage_not_allowed",
        "not_evaluated",
        "unverified",
        "below_min_value",
        "evaluation_failed",
        "format_not_allowed",
        "best",
        "incumbent_kept",
        "pinned",
        "no_eligible_model",
        # issue 3: a warning on a candidate, never a reason to exclude it
        "reported_mismatch",
    }


# -- values: non-finite, verified vs reported ------------------------------------------

NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_non_finite_reported_value_counts_as_not_evaluated(bad):
    decision = select(policy(), [run(1, reported=bad)])
    assert reasons_of(decision, 1) == {"not_evaluated"}
    assert decision.assessment(1).value is None
    assert decision.champion is None


@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_non_finite_value_never_beats_a_finite_one(bad):
    for metric in ("f1", "rmse"):
        decision = select(policy(metric=metric), [run(1, reported=bad), run(2, reported=0.5)])
        assert decision.champion == 2
        assert ranked_ids(decision) == [2]


@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_non_finite_verified_value_falls_back_to_the_reported_one(bad):
    decision = select(policy(), [run(1, reported=0.7, verified=bad)])
    assert decision.assessment(1).value == 0.7
    assert decision.champion == 1


@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_non_finite_verified_value_is_unverified_when_verification_is_required(bad):
    decision = select(policy(require_verified=True), [run(1, reported=0.7, verified=bad)])
    assert reasons_of(decision, 1) == {"unverified"}
    assert decision.champion is None


def test_the_verified_value_is_preferred_over_the_reported_one_even_when_not_required():
    # Run 1 reports 0.99 but the service measured 0.70; run 2 only reports 0.80.
    decision = select(policy(), [run(1, reported=0.99, verified=0.70), run(2, reported=0.80)])
    assert decision.assessment(1).value == 0.70
    assert decision.champion == 2
    assert ranked_ids(decision) == [2, 1]


def test_when_verification_is_required_reported_values_do_not_count():
    decision = select(policy(require_verified=True), [run(1, reported=0.99), run(2, verified=0.60)])
    assert decision.champion == 2
    assert ranked_ids(decision) == [2]
    assert reasons_of(decision, 1) == {"unverified"}


# -- ranking ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("higher", "lower"),
    [
        ("1.10", "1.9"),  # PEP 440 order, not text order
        ("10.0", "2.0"),
        ("2.0", "2.0rc1"),
        ("2.0rc2", "2.0rc1"),
        ("2.0rc1", "2.0b3"),
        ("1.0.post1", "1.0"),
        ("1.0.1", "1.0.post1"),
    ],
)
def test_on_equal_metric_the_higher_pep_440_version_wins(higher, lower):
    p = policy(versions="", allow_prereleases=True)
    for order in (
        [run(1, lower, reported=0.8), run(2, higher, reported=0.8)],
        [run(2, higher, reported=0.8), run(1, lower, reported=0.8)],
    ):
        decision = select(p, order)
        assert decision.champion == 2
        assert ranked_ids(decision) == [2, 1]


def test_on_equal_metric_and_version_the_higher_run_number_wins():
    runs = [
        run(10, number=2, reported=0.8),
        run(11, number=3, reported=0.8),
        run(12, number=1, reported=0.8),
    ]
    decision = select(policy(), runs)
    assert decision.champion == 11
    assert ranked_ids(decision) == [11, 10, 12]


@pytest.mark.parametrize(("first", "second"), [("1.0", "1.0.0"), ("1.0.0", "1.0")])
def test_equal_spellings_of_a_version_tie_and_fall_through_to_the_run_number(first, second):
    decision = select(
        policy(), [run(1, first, number=2, reported=0.8), run(2, second, number=1, reported=0.8)]
    )
    assert decision.champion == 1


def test_a_better_metric_beats_a_higher_version():
    decision = select(
        policy(versions=""), [run(1, "1.0", reported=0.9), run(2, "2.0", reported=0.8)]
    )
    assert decision.champion == 1


def test_a_higher_version_beats_a_higher_run_number():
    decision = select(
        policy(versions=""),
        [run(1, "1.0", number=5, reported=0.8), run(2, "1.1", number=1, reported=0.8)],
    )
    assert decision.champion == 2


@pytest.mark.parametrize(
    "overrides", [{"metric": "rmse"}, {"metric": "latency_ms", "direction": "min"}]
)
def test_for_a_metric_to_minimize_the_lowest_value_wins(overrides):
    runs = [run(1, reported=2.0), run(2, reported=1.5), run(3, reported=3.0)]
    decision = select(policy(**overrides), runs)
    assert decision.champion == 2
    assert ranked_ids(decision) == [2, 1, 3]
    assert decision.reason == Reason.BEST


@pytest.mark.parametrize(
    "overrides", [{"metric": "f1"}, {"metric": "throughput", "direction": "max"}]
)
def test_for_a_metric_to_maximize_the_highest_value_wins(overrides):
    runs = [run(1, reported=2.0), run(2, reported=1.5), run(3, reported=3.0)]
    decision = select(policy(**overrides), runs)
    assert decision.champion == 3
    assert ranked_ids(decision) == [3, 1, 2]


def test_ranked_holds_the_eligible_runs_with_ranks_one_to_n_and_excluded_the_rest():
    runs = [
        run(1, reported=0.7),
        run(2, "2.0", reported=0.99),
        run(3, reported=0.9),
        run(4, stage="Staging", reported=0.95),
        run(5, reported=0.8),
        run(6),
    ]
    decision = select(policy(), runs)

    assert ranked_ids(decision) == [3, 5, 1]
    assert [a.rank for a in decision.ranked] == [1, 2, 3]
    assert excluded_ids(decision) == {2, 4, 6}
    assert all(a.rank is None for a in decision.excluded)
    assert sorted(a.candidate.run_id for a in decision.assessments) == [1, 2, 3, 4, 5, 6]
    assert decision.champion_assessment is decision.ranked[0]


# -- hysteresis ------------------------------------------------------------------------


def test_the_incumbent_stays_when_the_best_improves_by_less_than_min_improvement():
    runs = [run(1, number=1, reported=0.80), run(2, number=2, reported=0.84)]
    decision = select(policy(min_improvement=0.05), runs, incumbent=1)
    assert decision.champion == 1
    assert decision.reason == Reason.INCUMBENT_KEPT
    assert ranked_ids(decision) == [2, 1]  # the ranking itself is unchanged


def test_the_incumbent_stays_on_a_tie_when_min_improvement_is_positive():
    runs = [run(1, "0.9", reported=0.80), run(2, "1.0", reported=0.80)]
    decision = select(policy(min_improvement=0.01), runs, incumbent=1)
    assert decision.champion == 1
    assert decision.reason == Reason.INCUMBENT_KEPT


def test_without_min_improvement_a_tie_broken_by_version_replaces_the_incumbent():
    runs = [run(1, "0.9", reported=0.80), run(2, "1.0", reported=0.80)]
    decision = select(policy(), runs, incumbent=1)
    assert decision.champion == 2
    assert decision.reason == Reason.BEST


@pytest.mark.parametrize(
    ("best", "incumbent", "min_improvement"),
    [
        (0.9, 0.8, 0.1),  # 0.9 - 0.8 == 0.09999999999999998 in floats
        (0.3, 0.2, 0.1),
        (0.7, 0.6, 0.1),
        (0.85, 0.8, 0.05),
        (0.75, 0.5, 0.25),  # exact in binary
    ],
)
def test_an_improvement_of_exactly_min_improvement_replaces_the_incumbent(
    best, incumbent, min_improvement
):
    runs = [run(1, number=1, reported=incumbent), run(2, number=2, reported=best)]
    decision = select(policy(min_improvement=min_improvement), runs, incumbent=1)
    assert decision.champion == 2
    assert decision.reason == Reason.BEST


def test_an_improvement_above_min_improvement_replaces_the_incumbent():
    runs = [run(1, number=1, reported=0.80), run(2, number=2, reported=0.90)]
    decision = select(policy(min_improvement=0.05), runs, incumbent=1)
    assert decision.champion == 2
    assert decision.reason == Reason.BEST


@pytest.mark.parametrize(("challenger", "champion"), [(1.9, 2), (1.95, 1)])
def test_hysteresis_measures_improvement_in_the_policy_direction(challenger, champion):
    runs = [run(1, number=1, reported=2.0), run(2, number=2, reported=challenger)]
    decision = select(policy(metric="rmse", min_improvement=0.1), runs, incumbent=1)
    assert decision.champion == champion


def test_hysteresis_compares_the_incumbent_with_the_best_run_only():
    # 0.83 beats the incumbent by 0.03 (< 0.05), 0.86 by 0.06 (>= 0.05).
    runs = [run(1, reported=0.80), run(2, number=2, reported=0.83), run(3, number=3, reported=0.86)]
    assert select(policy(min_improvement=0.05), runs, incumbent=1).champion == 3
    assert select(policy(min_improvement=0.05), runs[:2], incumbent=1).champion == 1


@pytest.mark.parametrize(
    "incumbent_run",
    [
        run(1, stage="Archived", reported=0.80),
        run(1, "1.5", reported=0.80),
        run(1, "1.0rc1", reported=0.80),
        run(1),
        run(1, reported=0.50),  # below min_value
    ],
)
def test_an_incumbent_that_is_no_longer_eligible_gives_way_to_the_best(incumbent_run):
    decision = select(
        policy(min_improvement=0.5, min_value=0.6),
        [incumbent_run, run(2, number=2, reported=0.81)],
        incumbent=1,
    )
    assert decision.champion == 2
    assert decision.reason == Reason.BEST


def test_an_incumbent_that_is_no_longer_a_candidate_gives_way_to_the_best():
    decision = select(policy(min_improvement=0.5), [run(2, reported=0.81)], incumbent=1)
    assert decision.champion == 2
    assert decision.reason == Reason.BEST


def test_an_incumbent_that_is_the_best_stays_champion():
    runs = [run(1, reported=0.9), run(2, number=2, reported=0.8)]
    assert select(policy(min_improvement=0.05), runs, incumbent=1).champion == 1


# -- pins ------------------------------------------------------------------------------


def test_a_pinned_ineligible_run_is_champion_and_still_lists_why_it_is_ineligible():
    runs = [run(1, reported=0.9), run(2, "2.0", stage="Archived")]
    decision = select(policy(), runs, pin=2)

    assert decision.champion == 2
    assert decision.reason == Reason.PINNED
    assert reasons_of(decision, 2) == {"version_out_of_range", "stage_not_allowed", "not_evaluated"}
    assert excluded_ids(decision) == {2}
    assert ranked_ids(decision) == [1]
    assert decision.champion_assessment is decision.assessment(2)


def test_a_pin_wins_over_the_best_and_over_the_incumbent():
    runs = [run(1, reported=0.9), run(2, number=2, reported=0.7), run(3, number=3, reported=0.8)]
    decision = select(policy(min_improvement=0.5), runs, incumbent=3, pin=2)
    assert decision.champion == 2
    assert decision.reason == Reason.PINNED


def test_a_pin_wins_even_when_no_run_is_eligible():
    decision = select(policy(), [run(1, stage="Staging")], pin=1)
    assert decision.champion == 1
    assert decision.reason == Reason.PINNED
    assert decision.ranked == ()


def test_a_pin_to_a_run_that_is_not_a_candidate_is_ignored():
    runs = [run(1, reported=0.7), run(2, number=2, reported=0.9)]
    decision = select(policy(), runs, pin=99)
    assert decision.champion == 2
    assert decision.reason == Reason.BEST


def test_a_pin_to_a_missing_run_leaves_hysteresis_in_charge():
    runs = [run(1, reported=0.80), run(2, number=2, reported=0.82)]
    decision = select(policy(min_improvement=0.05), runs, incumbent=1, pin=99)
    assert decision.champion == 1
    assert decision.reason == Reason.INCUMBENT_KEPT


# -- no eligible run -------------------------------------------------------------------


def test_without_candidates_there_is_no_champion():
    decision = select(policy(), [])
    assert decision.champion is None
    assert decision.reason == Reason.NO_ELIGIBLE_MODEL
    assert decision.ranked == ()
    assert decision.excluded == ()
    assert decision.champion_assessment is None


@pytest.mark.parametrize("incumbent", [None, 1])
@pytest.mark.parametrize("pin", [None, 99])
def test_when_no_run_is_eligible_there_is_no_champion(incumbent, pin):
    runs = [run(1, stage="Staging", reported=0.9), run(2, "2.0", reported=0.95), run(3)]
    decision = select(policy(), runs, incumbent=incumbent, pin=pin)
    assert decision.champion is None
    assert decision.reason == Reason.NO_ELIGIBLE_MODEL
    assert decision.ranked == ()
    assert excluded_ids(decision) == {1, 2, 3}


def test_select_accepts_any_iterable_of_candidates():
    decision = select(policy(), (c for c in [run(1, reported=0.7), run(2, reported=0.9)]))
    assert decision.champion == 2
    assert ranked_ids(decision) == [2, 1]


def test_a_tiny_min_improvement_is_not_swallowed_by_the_rounding_tolerance() -> None:
    policy = Policy("", ("Production",), "f1", "d@1", min_improvement=5e-13)
    incumbent = Candidate(1, "1.0", 1, "Production", reported=0.5)
    equal = Candidate(2, "2.0", 1, "Production", reported=0.5)

    decision = select(policy, [incumbent, equal], incumbent=1)

    assert (decision.champion, str(decision.reason)) == (1, "incumbent_kept")


def test_a_large_shortfall_against_a_large_min_improvement_keeps_the_incumbent() -> None:
    policy = Policy("", ("Production",), "mae", "d@1", min_improvement=1e6)
    incumbent = Candidate(1, "1.0", 1, "Production", reported=2e6)
    challenger = Candidate(2, "1.0", 2, "Production", reported=2e6 - (1e6 - 5e-4))

    decision = select(policy, [incumbent, challenger], incumbent=1)

    assert decision.champion == 1


@pytest.mark.parametrize(
    ("reported", "verified", "warned"),
    [
        (0.9, 0.8, True),
        (0.8, 0.9, True),
        (0.9, 0.9 + 2e-6, True),
        (0.9, 0.9 + 5e-7, False),
        (0.9, 0.9, False),
        (0.9, None, False),
        (None, 0.9, False),
        (float("nan"), 0.9, False),
    ],
)
def test_a_reported_value_far_from_the_verified_one_is_flagged_but_never_excluded(
    reported: float | None, verified: float | None, warned: bool
) -> None:
    policy = Policy("", ("Staging",), "f1", "d@1")
    run = Candidate(1, "1.0", 1, "Staging", reported=reported, verified=verified)
    decision = select(policy, [run])
    assessment = decision.assessment(1)
    assert assessment is not None
    assert assessment.warnings == ((Reason.REPORTED_MISMATCH,) if warned else ())
    assert decision.champion == 1
    # The verified value is the one that counts; a reported one only stands in for it.
    assert assessment.value == (verified if verified is not None else reported)


# -- failed evaluations ----------------------------------------------------------------


def failed(job_id: int = 12, error: str = "UnpicklingError: invalid load key") -> EvaluationJob:
    return EvaluationJob(job_id, "failed", error)


@pytest.mark.parametrize("require_verified", [False, True])
def test_a_run_whose_evaluation_failed_is_excluded_whatever_require_verified_says(
    require_verified: bool,
) -> None:
    not_a_model = Candidate(1, "1.0", 1, "Production", reported=1.0, job=failed())
    honest = Candidate(2, "1.0", 2, "Production", reported=0.7, verified=0.7)

    decision = select(policy(require_verified=require_verified), [not_a_model, honest])

    assert decision.champion == 2
    assert reasons_of(decision, 1) == {"evaluation_failed"}


def test_a_failed_evaluation_replaces_not_evaluated_and_unverified_and_keeps_other_reasons() -> (
    None
):
    p = policy(require_verified=True)
    unverified = Candidate(1, "2.0", 1, "Staging", reported=0.9, job=failed())
    unevaluated = Candidate(2, "1.0", 1, "Production", job=failed())

    decision = select(p, [unverified, unevaluated])

    assert reasons_of(decision, 1) == {
        "version_out_of_range",
        "stage_not_allowed",
        "evaluation_failed",
    }
    assert reasons_of(decision, 2) == {"evaluation_failed"}
    assert decision.champion is None


@pytest.mark.parametrize("state", ["pending", "running", "succeeded"])
def test_a_reported_value_serves_while_the_evaluation_has_not_failed(state: str) -> None:
    run_ = Candidate(1, "1.0", 1, "Production", reported=0.9, job=EvaluationJob(3, state))

    decision = select(policy(require_verified=False), [run_])

    assert decision.champion == 1


def test_a_verified_value_counts_even_when_a_later_evaluation_failed() -> None:
    # Verified values are immutable: a retry that failed does not take them away.
    run_ = Candidate(1, "1.0", 1, "Production", verified=0.8, job=failed())

    decision = select(policy(require_verified=True), [run_])

    assert decision.champion == 1


def test_a_pinned_run_whose_evaluation_failed_is_still_served_with_its_reason() -> None:
    run_ = Candidate(1, "1.0", 1, "Production", reported=0.9, job=failed())

    decision = select(policy(), [run_], pin=1)

    assert (decision.champion, decision.reason) == (1, Reason.PINNED)
    assert reasons_of(decision, 1) == {"evaluation_failed"}


# -- artifact formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "artifact_format", "allowed"),
    [
        ((), "joblib", True),
        ((), None, True),
        (("skops", "onnx"), "skops", True),
        (("skops", "onnx"), "onnx", True),
        (("skops", "onnx"), "joblib", False),
        (("skops", "onnx"), "pickle", False),
        (("skops",), "SKOPS", True),
        (("skops",), None, False),
    ],
)
def test_a_run_in_a_format_the_policy_does_not_allow_is_excluded(
    formats: tuple[str, ...], artifact_format: str | None, allowed: bool
) -> None:
    run_ = Candidate(1, "1.0", 1, "Production", reported=0.9, artifact_format=artifact_format)

    decision = select(policy(formats=formats), [run_])

    assert reasons_of(decision, 1) == (set() if allowed else {"format_not_allowed"})
    assert (decision.champion == 1) is allowed


def test_a_pin_cannot_serve_a_format_the_policy_forbids() -> None:
    pickled = Candidate(1, "1.0", 1, "Production", reported=0.99, artifact_format="pickle")
    safe = Candidate(2, "1.0", 2, "Production", reported=0.8, artifact_format="skops")

    decision = select(policy(formats=("skops",)), [pickled, safe], pin=1)

    assert (decision.champion, decision.reason) == (2, Reason.BEST)
    assert reasons_of(decision, 1) == {"format_not_allowed"}
