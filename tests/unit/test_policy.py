"""The per-(environment, model) policy and the stages (``modelreg.policies``).

Expectations come from DESIGN.md: the policy fields and their defaults, the default
direction per metric name, and the table of allowed stage transitions.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from modelreg import policies
from modelreg.policies.policy import STAGES, Policy, PolicyError, default_direction
from modelreg.policies.stages import ALLOWED_TRANSITIONS, allowed_targets, can_transition


def make(**overrides: object) -> Policy:
    fields: dict[str, object] = {
        "versions": "<=1.0",
        "stages": ("Production",),
        "metric": "f1",
        "dataset": "wine-holdout@3",
    }
    fields.update(overrides)
    return Policy(**fields)  # type: ignore[arg-type]


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"versions": "<=one"}, "versions"),
        ({"versions": "1.0"}, "versions"),
        ({"versions": "latest"}, "versions"),
        ({"versions": "<=1.0.*"}, "versions"),
        ({"stages": ()}, "stages"),
        ({"stages": []}, "stages"),
        ({"stages": ("Prod",)}, "stages"),
        ({"stages": ("production",)}, "stages"),
        ({"stages": ("Production", "Gold")}, "stages"),
        ({"stages": (None,)}, "stages"),
        ({"metric": ""}, "metric"),
        ({"dataset": ""}, "dataset"),
        ({"metric": "latency_ms"}, "direction"),
        ({"metric": "latency_ms", "direction": None}, "direction"),
        ({"direction": "up"}, "direction"),
        ({"direction": "MAX"}, "direction"),
        ({"metric": "latency_ms", "direction": "lower"}, "direction"),
        ({"min_value": math.nan}, "min_value"),
        ({"min_value": math.inf}, "min_value"),
        ({"min_value": -math.inf}, "min_value"),
        ({"min_improvement": -0.01}, "min_improvement"),
        ({"min_improvement": -1}, "min_improvement"),
        ({"min_improvement": math.nan}, "min_improvement"),
        ({"min_improvement": math.inf}, "min_improvement"),
        # Strictness added after review: no silent defaults, no non-numbers.
        ({"stages": "Production"}, "stages"),
        ({"metric": "   "}, "metric"),
        ({"dataset": "   "}, "dataset"),
        ({"dataset": "wine-holdout"}, "dataset"),
        ({"dataset": "wine-holdout@0"}, "dataset"),
        ({"dataset": "wine-holdout@latest"}, "dataset"),
        ({"direction": ""}, "direction"),
        ({"metric": "rmse", "direction": ""}, "direction"),
        ({"min_value": "0.8"}, "min_value"),
        ({"min_value": True}, "min_value"),
        ({"min_improvement": "0.1"}, "min_improvement"),
        ({"min_improvement": False}, "min_improvement"),
    ],
)
def test_an_invalid_field_raises_a_policy_error_naming_that_field(overrides, field):
    with pytest.raises(PolicyError) as info:
        make(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.message


def test_a_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)
    with pytest.raises(ValueError):
        make(stages=())


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"versions": ""},
        {"versions": ">=1.0,<2"},
        {"stages": list(STAGES)},
        {"metric": "latency_ms", "direction": "min"},
        {"metric": "throughput", "direction": "max"},
        {"metric": "rmse", "direction": "max"},  # an explicit direction overrides the default
        {"min_value": 0.0},
        {"min_value": -0.5},  # r2 and friends can be negative
        {"min_improvement": 0.0},
        {"min_improvement": 0.25},
        {"allow_prereleases": True, "require_verified": True},
    ],
)
def test_a_valid_policy_is_accepted(overrides):
    policy = make(**overrides)
    for name, value in overrides.items():
        if name not in ("versions", "stages"):
            assert getattr(policy, name) == value


def test_the_optional_fields_have_the_documented_defaults():
    policy = make()
    assert policy.min_value is None
    assert policy.min_improvement == 0.0
    assert policy.allow_prereleases is False
    assert policy.require_verified is False


# -- directions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("accuracy", "max"),
        ("ACCURACY", "max"),
        ("f1", "max"),
        ("F1", "max"),
        ("f1_macro", "max"),
        ("f1_weighted", "max"),
        ("precision", "max"),
        ("precision_micro", "max"),
        ("recall", "max"),
        ("recall_macro", "max"),
        ("roc_auc", "max"),
        ("r2", "max"),
        ("rmse", "min"),
        ("RMSE", "min"),
        ("mae", "min"),
        ("mse", "min"),
        ("log_loss", "min"),
        ("latency_ms", None),
        ("loss", None),
        ("auc", None),
        ("accuracy_top5", None),  # only f1, precision and recall cover variants
        ("rmse_log", None),
        ("my_f1", None),
    ],
)
def test_default_direction_follows_the_metric_name(metric, direction):
    assert default_direction(metric) == direction


@pytest.mark.parametrize(
    ("metric", "direction"), [("f1", "max"), ("roc_auc", "max"), ("rmse", "min"), ("mae", "min")]
)
def test_a_policy_without_direction_takes_the_metric_default(metric, direction):
    policy = make(metric=metric)
    assert policy.direction == direction
    assert policy.maximize is (direction == "max")
    assert policy == make(metric=metric, direction=direction)


@pytest.mark.parametrize(("metric", "direction"), [("rmse", "max"), ("f1", "min")])
def test_an_explicit_direction_wins_over_the_metric_default(metric, direction):
    policy = make(metric=metric, direction=direction)
    assert policy.direction == direction
    assert policy.maximize is (direction == "max")


# -- canonical form, equality, immutability --------------------------------------------


@pytest.mark.parametrize(
    "stages",
    [
        ("Production", "Staging"),
        ("Staging", "Production"),
        ["Production", "Staging", "Production"],
    ],
)
def test_stages_are_kept_in_canonical_order_without_duplicates(stages):
    policy = make(stages=stages)
    assert policy.stages == ("Staging", "Production")
    assert policy == make(stages=("Staging", "Production"))


def test_all_stages_come_out_in_stage_order_whatever_the_input_order():
    assert make(stages=tuple(reversed(STAGES))).stages == STAGES


@pytest.mark.parametrize(("a", "b"), [(" <= 2.0 , >1 ", ">1,<=2.0"), ("<= 1.0", "<=1.0")])
def test_equal_specifiers_spelled_differently_give_equal_policies(a, b):
    assert make(versions=a).versions == make(versions=b).versions
    assert make(versions=a) == make(versions=b)
    assert hash(make(versions=a)) == hash(make(versions=b))


def test_the_specifier_is_parsed_once_and_matches_the_versions_text():
    policy = make(versions=">=1.0,<2")
    assert policy.specifier.contains("1.5")
    assert not policy.specifier.contains("2.0")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("versions", ""),
        ("stages", ("Staging",)),
        ("metric", "rmse"),
        ("dataset", "other@1"),
        ("direction", "min"),
        ("min_value", 0.5),
        ("min_improvement", 0.1),
        ("allow_prereleases", True),
        ("require_verified", True),
        ("specifier", None),
    ],
)
def test_a_policy_is_frozen(name, value):
    policy = make()
    before = getattr(policy, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(policy, name, value)
    assert getattr(policy, name) == before


# -- min_value and improvement ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reaches"), [(0.8, True), (0.81, True), (1.0, True), (0.79, False), (-1.0, False)]
)
def test_for_a_metric_to_maximize_min_value_is_a_lower_bound(value, reaches):
    assert make(metric="f1", min_value=0.8).reaches_min_value(value) is reaches


@pytest.mark.parametrize(
    ("value", "reaches"), [(3.0, True), (2.5, True), (0.0, True), (3.01, False), (100.0, False)]
)
def test_for_a_metric_to_minimize_min_value_is_an_upper_bound(value, reaches):
    assert make(metric="rmse", min_value=3.0).reaches_min_value(value) is reaches


@pytest.mark.parametrize("metric", ["f1", "rmse"])
@pytest.mark.parametrize("value", [-1e9, 0.0, 1e9])
def test_without_min_value_every_value_reaches_it(metric, value):
    assert make(metric=metric).reaches_min_value(value)


@pytest.mark.parametrize(
    ("metric", "challenger", "incumbent", "expected"),
    [
        ("f1", 0.9, 0.8, 0.1),
        ("f1", 0.8, 0.9, -0.1),
        ("rmse", 2.0, 2.5, 0.5),
        ("rmse", 2.5, 2.0, -0.5),
        ("f1", 0.5, 0.5, 0.0),
    ],
)
def test_improvement_is_positive_when_the_challenger_is_better_in_the_policy_direction(
    metric, challenger, incumbent, expected
):
    assert make(metric=metric).improvement(challenger, incumbent) == pytest.approx(expected)


# -- stages and transitions ------------------------------------------------------------

# DESIGN.md, POST /models/{model}/versions/{version}/transitions.
DESIGN_TRANSITIONS = {
    ("None", "Staging"),
    ("None", "Archived"),
    ("Staging", "Production"),
    ("Staging", "Archived"),
    ("Staging", "None"),
    ("Production", "Staging"),
    ("Production", "Archived"),
    ("Archived", "Staging"),
}


def test_the_stages_are_the_four_of_the_design_in_order():
    assert STAGES == ("None", "Staging", "Production", "Archived")
    assert policies.STAGES == STAGES


@pytest.mark.parametrize(("current", "target"), sorted(DESIGN_TRANSITIONS))
def test_every_transition_listed_in_the_design_is_allowed(current, target):
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [pair for pair in itertools.product(STAGES, STAGES) if pair not in DESIGN_TRANSITIONS],
)
def test_every_other_transition_between_the_four_stages_is_refused(current, target):
    assert not can_transition(current, target)


def test_the_transition_table_is_exactly_the_design_table():
    assert set(ALLOWED_TRANSITIONS) == DESIGN_TRANSITIONS


@pytest.mark.parametrize(
    ("current", "target"), [("Prod", "Staging"), ("None", "Gold"), ("none", "staging")]
)
def test_a_transition_from_or_to_an_unknown_stage_is_refused(current, target):
    assert not can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "targets"),
    [
        ("None", ["Staging", "Archived"]),
        ("Staging", ["None", "Production", "Archived"]),
        ("Production", ["Staging", "Archived"]),
        ("Archived", ["Staging"]),
        ("Gold", []),
    ],
)
def test_allowed_targets_lists_the_reachable_stages_in_stage_order(current, targets):
    assert allowed_targets(current) == targets


# -- allowed artifact formats -----------------------------------------------------------


def test_formats_default_to_any_and_are_kept_lower_case_sorted_and_unique():
    assert make().formats == ()
    assert make(formats=["ONNX", "skops", "onnx"]).formats == ("onnx", "skops")


@pytest.mark.parametrize("formats", ["skops", ["sk ops"], [""], [1], ["x" * 33]])
def test_formats_that_are_no_list_of_format_names_are_refused(formats):
    with pytest.raises(PolicyError) as info:
        make(formats=formats)
    assert info.value.field == "formats"


def test_allows_format_is_true_for_any_format_when_the_policy_names_none():
    assert make().allows_format("pickle") and make().allows_format(None)
    assert make(formats=["skops"]).allows_format("skops")
    assert not make(formats=["skops"]).allows_format("joblib")
