"""The floor of ``bench/resolve.py``: the least a Flask app can do to answer a champion.

``GET /floor/<env>/<model>`` runs exactly one SELECT on the unique index
``champions (environment_key, model_key)`` with SQLAlchemy Core (a statement
built once, with bound parameters, through a pooled connection), on the database
named by ``MODELREG_DATABASE_URL``, and returns the row as JSON. No ORM, no
marshmallow, no before-request hooks, no ETag, no access log: whatever modelreg
spends beyond this is its own overhead.

``GET /floor-nagle/<env>/<model>`` is the same, after switching Nagle's algorithm
back on for the connection (gunicorn turns it off). It exists only as the control of
the delayed-ACK check: with Nagle on, gunicorn's separate writes of headers and body
stall for the client's delayed ACK (about 40 ms on Linux), and the check must see it.

Serve it with gunicorn, e.g.
``gunicorn -k gthread -w 2 --threads 4 --keep-alive 5 --chdir bench floor_app:app``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from flask import Flask, abort, jsonify, request
from sqlalchemy import bindparam, column, create_engine, select, table
from sqlalchemy.engine import make_url

URL = os.environ["MODELREG_DATABASE_URL"]

_COLUMNS = (
    "environment",
    "model",
    "version",
    "stage",
    "run_id",
    "run_number",
    "metric",
    "value",
    "dataset",
    "artifact_sha256",
    "artifact_size",
    "selected_at",
    "reason",
    "policy_revision",
)
champions = table(
    "champions", column("environment_key"), column("model_key"), *(column(c) for c in _COLUMNS)
)

if make_url(URL).get_backend_name() == "sqlite":
    # One pooled connection per thread at most; the file is already in WAL mode.
    engine = create_engine(URL, connect_args={"check_same_thread": False})
else:
    # Autocommit, as the service's lookup pool: a lone SELECT needs no BEGIN/ROLLBACK
    # round trips, and a floor that paid them would flatter the service.
    engine = create_engine(URL, isolation_level="AUTOCOMMIT", pool_size=10, max_overflow=20)

app = Flask("floor")
# Built once, with bound parameters: each request reuses the compiled statement as is.
_QUERY = select(*(champions.c[c] for c in _COLUMNS)).where(
    champions.c.environment_key == bindparam("environment_key"),
    champions.c.model_key == bindparam("model_key"),
)


def _answer(env: str, model: str) -> Any:
    with engine.connect() as conn:
        row = conn.execute(
            _QUERY, {"environment_key": env.lower(), "model_key": model.lower()}
        ).one_or_none()
    if row is None:
        abort(404)
    doc = dict(row._mapping)
    if doc["selected_at"] is not None and not isinstance(doc["selected_at"], str):
        doc["selected_at"] = doc["selected_at"].isoformat()
    return jsonify(doc)


@app.get("/floor/<env>/<model>")
def floor(env: str, model: str) -> Any:
    return _answer(env, model)


@app.get("/floor-nagle/<env>/<model>")
def floor_with_nagle(env: str, model: str) -> Any:
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    return _answer(env, model)
