"""The floor of ``bench/register.py``: the least an HTTP server can do to register a run.

``POST /floor/runs`` with the same multipart body the service gets (``metadata`` JSON,
then ``artifact``): Werkzeug's form parser streams the artifact to a temporary file,
which is hashed, fsynced and renamed to its content address (directory fsynced, as the
artifact store does); then one transaction inserts the run row and one row per
reported metric into tables shaped like the service's (``floor_runs``,
``floor_evaluations``, with the indexes a lookup by run needs). No models, versions,
policies, champions, jobs, audit, auth or marshmallow: whatever modelreg spends beyond
this is its own. Database: ``MODELREG_DATABASE_URL``; store: ``FLOOR_ROOT``.

Serve it with gunicorn like the service, e.g.
``gunicorn -k gthread -w 1 --threads 4 --chdir bench register_floor:app``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

URL = os.environ["MODELREG_DATABASE_URL"]
ROOT = Path(os.environ["FLOOR_ROOT"])
(ROOT / "tmp").mkdir(parents=True, exist_ok=True)

SQLITE = make_url(URL).get_backend_name() == "sqlite"
engine = create_engine(URL, connect_args={"check_same_thread": False} if SQLITE else {})
if SQLITE:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")


SERIAL = "INTEGER PRIMARY KEY" if SQLITE else "BIGSERIAL PRIMARY KEY"
SCHEMA = [
    f"CREATE TABLE IF NOT EXISTS floor_runs (id {SERIAL}, sha256 VARCHAR(64) NOT NULL, "
    "size BIGINT NOT NULL, params TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS floor_evaluations (id {SERIAL}, run_id BIGINT NOT NULL, "
    "dataset VARCHAR(120) NOT NULL, metric VARCHAR(100) NOT NULL, value DOUBLE PRECISION)",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_floor_eval ON floor_evaluations "
    "(run_id, dataset, metric)",
]


def create_schema() -> None:
    with engine.begin() as conn:
        for statement in SCHEMA:
            conn.execute(text(statement))


def prefill(n: int) -> None:
    """``n`` runs with one metric each, so the floor's tables are as large as the service's."""
    create_schema()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO floor_runs (sha256, size, params) VALUES (:s, 1, '{}')"),
            [{"s": f"{i:064x}"} for i in range(n)],
        )
        conn.execute(
            text(
                "INSERT INTO floor_evaluations (run_id, dataset, metric, value) "
                "SELECT id, 'wine-holdout@1', 'f1', 0.5 FROM floor_runs"
            )
        )


app = Flask("register-floor")
INSERT_RUN = text(
    "INSERT INTO floor_runs (sha256, size, params) VALUES (:sha256, :size, :params) RETURNING id"
)
INSERT_EVAL = text(
    "INSERT INTO floor_evaluations (run_id, dataset, metric, value) "
    "VALUES (:run_id, :dataset, :metric, :value)"
)


@app.post("/floor/runs")
def register() -> Any:
    meta = json.loads(request.form["metadata"])
    upload = request.files["artifact"]
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=ROOT / "tmp")
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := upload.stream.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    sha = digest.hexdigest()
    target = ROOT / "sha256" / sha[:2] / sha[2:4] / sha
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    with engine.begin() as conn:
        run_id = conn.execute(
            INSERT_RUN, {"sha256": sha, "size": size, "params": json.dumps(meta.get("params"))}
        ).scalar_one()
        rows = [
            {"run_id": run_id, "dataset": ev["dataset"], "metric": k, "value": v}
            for ev in meta.get("evaluations", [])
            for k, v in ev["metrics"].items()
        ]
        if rows:
            conn.execute(INSERT_EVAL, rows)
    return jsonify({"id": run_id, "artifact": {"sha256": sha, "size": size}}), 201
