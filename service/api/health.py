"""Liveness and readiness: outside /api/v1, open to probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from service.api.common import ctx
from service.api.errors import error_response

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
    return jsonify({"status": "ready"})
