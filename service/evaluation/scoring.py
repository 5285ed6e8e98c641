"""The metrics the service computes, with ``sklearn.metrics``.

Classification: ``accuracy``, ``f1`` (weighted), ``f1_macro``,
``precision`` and ``recall`` (weighted), ``roc_auc`` (one-vs-rest; needs
``predict_proba`` and every class of the model in the test set) and ``log_loss``
(needs ``predict_proba``). Regression: ``r2``, ``rmse``, ``mae``. Averaged scores
use ``zero_division=0``, scikit-learn's default value without its warning.

A metric that cannot be computed is *skipped* with a reason, never stored as NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CLASSIFICATION = ("accuracy", "f1", "f1_macro", "precision", "recall", "roc_auc", "log_loss")
REGRESSION = ("r2", "rmse", "mae")
TASKS = {"classification": CLASSIFICATION, "regression": REGRESSION}


class Skip(Exception):
    """A metric that does not apply to this model or test set; the message says why."""


@dataclass
class Scores:
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _few(labels: set[Any]) -> str:
    return ", ".join(sorted(map(str, labels))[:10])


def _classification(
    y: Any, y_pred: Any, proba: Any, labels_of_model: Any, missing: dict[str, str]
) -> dict[str, Callable[[], float]]:
    from sklearn import metrics as m

    def probabilities() -> Any:
        if proba is None:
            raise Skip(missing.get("proba", "the model has no predict_proba"))
        return proba

    def classes() -> list[Any]:
        if labels_of_model is None:
            raise Skip(missing.get("classes", "the model has no classes_"))
        return list(labels_of_model)

    def roc_auc() -> float:
        p, labels = probabilities(), classes()
        missing = set(labels) - set(y.tolist())
        if missing:
            raise Skip(f"the test set lacks class(es) {_few(missing)}")
        unknown = set(y.tolist()) - set(labels)
        if unknown:
            raise Skip(
                f"the test set has class(es) the model never saw: {sorted(map(str, unknown))[:10]}"
            )
        if len(labels) == 2:
            return float(m.roc_auc_score(y, p[:, 1]))
        return float(m.roc_auc_score(y, p, multi_class="ovr", labels=labels))

    def log_loss() -> float:
        p, labels = probabilities(), classes()
        unknown = set(y.tolist()) - set(labels)
        if unknown:
            raise Skip(
                f"the test set has class(es) the model never saw: {sorted(map(str, unknown))[:10]}"
            )
        return float(m.log_loss(y, p, labels=labels))

    return {
        "accuracy": lambda: float(m.accuracy_score(y, y_pred)),
        "f1": lambda: float(m.f1_score(y, y_pred, average="weighted", zero_division=0)),
        "f1_macro": lambda: float(m.f1_score(y, y_pred, average="macro", zero_division=0)),
        "precision": lambda: float(
            m.precision_score(y, y_pred, average="weighted", zero_division=0)
        ),
        "recall": lambda: float(m.recall_score(y, y_pred, average="weighted", zero_division=0)),
        "roc_auc": roc_auc,
        "log_loss": log_loss,
    }


def _regression(y: Any, y_pred: Any) -> dict[str, Callable[[], float]]:
    from sklearn import metrics as m

    def r2() -> float:
        if len(y) < 2:
            raise Skip("r2 needs at least two rows")
        return float(m.r2_score(y, y_pred))

    return {
        "r2": r2,
        "rmse": lambda: float(m.root_mean_squared_error(y, y_pred)),
        "mae": lambda: float(m.mean_absolute_error(y, y_pred)),
    }


def score(
    task: str,
    y_true: Any,
    y_pred: Any,
    proba: Any = None,
    classes: Any = None,
    missing: dict[str, str] | None = None,
) -> Scores:
    """Every metric of ``task`` for predictions ``y_pred`` against the labels ``y_true``.

    ``proba`` (``predict_proba``'s output) and ``classes`` (the model's ``classes_``)
    feed the metrics that need them; when one is ``None``, ``missing`` says why and
    those metrics are skipped with that reason. One metric failing only skips it.
    The caller (the trusted worker) checked lengths and types; the model never sees
    ``y_true``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    if task == "classification":
        computations = _classification(y_true, y_pred, proba, classes, missing or {})
    else:
        computations = _regression(y_true, y_pred)
    scores = Scores()
    for name, compute in computations.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = compute()
        except Skip as exc:
            scores.skipped[name] = str(exc)
            continue
        except Exception as exc:  # a metric that does not apply to what predict returned
            scores.skipped[name] = f"{type(exc).__name__}: {exc}"[:500]
            continue
        if not math.isfinite(value):
            scores.skipped[name] = f"the value is not finite ({value})"
        else:
            scores.metrics[name] = value
    return scores
