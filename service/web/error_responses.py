"""The one place where failures become HTTP responses.

Every failure, ours or Werkzeug's or the database driver's, leaves as
``{"error": {"code", "message", "details"}}`` with a 4xx/5xx status: never an
HTML page, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Flask, Response, jsonify
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from modelreg import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ServiceError], int] = {
    errors.BadRequest: 400,
    errors.ValidationFailed: 422,
    errors.NotFound: 404,
    errors.NoEligibleModel: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.InvalidTransition: 409,
    errors.WouldLeaveNoModel: 409,
    errors.PreconditionFailed: 412,
    errors.PreconditionRequired: 428,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.PayloadTooLarge: 413,
    errors.TooManyRequests: 429,
    errors.Unavailable: 503,
}

# Werkzeug's status codes mapped to the contract's error codes.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "already_exists",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    428: "precondition_required",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "machine-readable code"})
    message = ma.fields.String(required=True)
    details = ma.fields.Dict(metadata={"description": "per-field messages or context"})


class ApiErrorSchema(ma.Schema):
    """The error shape of every failure."""

    error = ma.fields.Nested(ApiErrorBodySchema, required=True)


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    """``{"json": {"name": [...]}}`` → ``{"name": [...]}``: clients care about fields."""
    if not isinstance(messages, dict):
        return {"_request": messages}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[f"_{location}"] = fields
    return flat


def handle_service_error(exc: errors.ServiceError) -> Response:
    status = next(s for cls, s in STATUS.items() if isinstance(exc, cls))
    response = error_response(status, exc.code, exc.message, exc.details)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="modelreg"'
    return response


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if status == 422:
        details = _flatten_webargs(data.get("messages", {}))
        return error_response(422, "validation_error", errors.summarize(details), details)
    if status == 400 and "messages" in data:
        details = _flatten_webargs(data["messages"])
        return error_response(400, "bad_request", "malformed request body", details)
    if status >= 500:
        return error_response(status, "internal_error", "internal server error")
    code = HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    return error_response(status, code, exc.description or exc.name)


def handle_database_error(exc: DBAPIError) -> Response:
    if isinstance(exc, IntegrityError):
        # The service turns the conflicts it expects into AlreadyExists; one that
        # still reaches here lost a race with a concurrent request.
        return error_response(
            409, "already_exists", "a concurrent request changed the same data; retry"
        )
    if isinstance(exc, DataError):
        # A value our validation let through but the column refuses (length, NUL).
        return error_response(
            422, "validation_error", "a value is too long or contains characters not allowed"
        )
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database unavailable: %s", exc.orig)
        return error_response(503, "unavailable", "the database is unavailable; retry later")
    return handle_unexpected(exc)


def handle_pool_timeout(exc: PoolTimeout) -> Response:
    # Every pooled connection is busy (or stuck on a database that stopped answering).
    log.warning("no database connection available: %s", exc)
    return error_response(503, "unavailable", "the database is unavailable; retry later")


def handle_too_deep(exc: RecursionError) -> Response:
    # Only hostile input nests this deep: JSON arrays in arrays (a body, run or
    # dataset metadata, a page token) beyond what the parser recurses into.
    return error_response(
        400, "bad_request", "the request nests JSON too deeply", {"body": ["nested too deeply"]}
    )


def handle_value_error(exc: ValueError) -> Response:
    # json.loads refuses integer literals beyond Python's digit limit (4300) with a
    # plain ValueError that webargs does not take for malformed JSON.
    if "integer string conversion" in str(exc):
        return error_response(
            400,
            "bad_request",
            "an integer in the request has too many digits",
            {"body": ["integer literal too long"]},
        )
    # psycopg2 refuses NUL in a text parameter with a ValueError, before PostgreSQL
    # sees it (a free-text field that no validator checked for NUL).
    if "NUL (0x00)" in str(exc):
        return error_response(
            422, "validation_error", "text values cannot contain NUL characters", {}
        )
    return handle_unexpected(exc)


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal server error")


def register(app: Flask) -> None:
    app.register_error_handler(errors.ServiceError, handle_service_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(PoolTimeout, handle_pool_timeout)
    app.register_error_handler(RecursionError, handle_too_deep)
    app.register_error_handler(ValueError, handle_value_error)
    app.register_error_handler(Exception, handle_unexpected)
