"""One small evaluation at import: preloaded by the sandbox's fork server only.

pandas and scikit-learn import modules and build caches lazily on first use (the
CSV reader, DataFrame validation through narwhals, the metrics). Running every code
path of an evaluation once, before any child is forked, lets each child inherit
all of that instead of redoing it per job: about 10 ms of every sandboxed job
(bench/README.md). Nothing here touches the network or the service's data.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from modelreg.evaluation.content import load_xy
from modelreg.evaluation.host import predict
from modelreg.evaluation.scoring import score


def _warm() -> None:
    with tempfile.TemporaryDirectory(prefix="modelreg-warm-") as tmp:
        data = Path(tmp, "warm.csv")
        rows = [f"{i % 7}.5,{i % 3},{(i * 5) % 11}.25,{i % 3}" for i in range(30)]
        data.write_text("a,b,c,target\n" + "\n".join(rows) + "\n")
        X, y = load_xy(data, "csv", "target")
        model = Path(tmp, "model.joblib")
        joblib.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), model)
        arrays, _ = predict(joblib.load(model), X, "classification")
        score("classification", y.to_numpy(), arrays["y_pred"], arrays["proba"], arrays["classes"])
        regressor = RandomForestRegressor(n_estimators=2, random_state=0).fit(X, y.astype(float))
        arrays, _ = predict(regressor, X, "regression")
        score("regression", y.astype(float).to_numpy(), arrays["y_pred"])


_warm()
