"""Liveness and readiness: outside /api/v1, open to probes."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from modelreg.runtime import serving_state
from modelreg.web.common import ctx
from modelreg.web.error_responses import error_response

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> Response:
    try:
        ctx().db.ping()
    except SQLAlchemyError:
        return error_response(503, "unavailable", "the database is unreachable")
    embedded = serving_state.embedded_worker()
    if embedded is None:
        isolation = ctx().settings.evaluation_isolation
        return jsonify(
            {"status": "ready", "evaluation": {"isolation": isolation, "embedded_worker": None}}
        )
    if not embedded.ready:
        return error_response(
            503,
            "unavailable",
            f"the embedded evaluation worker is not running ({embedded.state}); serve restarts it",
            {"embedded_worker": embedded.state, "restarts": embedded.restarts},
        )
    return jsonify(
        {
            "status": "ready",
            "evaluation": {"isolation": embedded.isolation, "embedded_worker": "ready"},
        }
    )


def init_app(app: Flask) -> None:
    """The probes are no part of the versioned API (nor of its OpenAPI document)."""
    app.register_blueprint(blp)
