"""One small evaluation at import: the fork server of ``evalprobe.py``'s ``warm`` variants.

Preloaded after the service's own modules (``set_forkserver_preload``), it runs the
code paths of an evaluation once before any child is forked: pandas' CSV reader,
scikit-learn's input validation (and the modules it imports on first use),
a joblib round trip of a forest, every classification metric. Children forked
afterwards inherit all of that instead of redoing it per job. With
``EVALBENCH_GC_FREEZE=1`` it also calls ``gc.freeze()``, so that the children's
garbage collections leave the inherited objects (and their pages) alone.

A measurement aid, not service code: it answers "how much of the sandbox's cost is
the child starting cold?".
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import joblib
from sklearn.ensemble import RandomForestClassifier

from modelreg.evaluation.content import load_xy
from modelreg.evaluation.host import predict


def _warm() -> None:
    with tempfile.TemporaryDirectory(prefix="evalwarm-") as tmp:
        data = Path(tmp, "warm.csv")
        rows = [f"{i % 7}.5,{i % 3},{(i * 5) % 11}.25,{i % 3}" for i in range(30)]
        data.write_text("a,b,c,target\n" + "\n".join(rows) + "\n")
        X, y = load_xy(data, "csv", "target")
        model = Path(tmp, "model.joblib")
        joblib.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), model)
        predict(joblib.load(model), X, "classification")


_warm()
if os.environ.get("EVALBENCH_GC_FREEZE") == "1":
    gc.collect()
    gc.freeze()
