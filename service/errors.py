"""One hierarchy of errors that carry data; no HTTP here.

The service layer raises these with a stable ``code``, a human message and
machine-readable ``details``. ``modelreg.web.error_responses`` is the one place that maps
them to status codes and the JSON error shape.
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """Settings that cannot be used; raised at start, never during a request."""


class ServiceError(Exception):
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadRequest(ServiceError):
    code = "bad_request"


class ValidationFailed(ServiceError):
    """Input that is well-formed but not acceptable; ``details`` maps fields to messages."""

    code = "validation_error"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(f"{name}: {message}", {name: [message]})


class NotFound(ServiceError):
    code = "not_found"


class NoEligibleModel(ServiceError):
    code = "no_eligible_model"


class AlreadyExists(ServiceError):
    code = "already_exists"


class InvalidTransition(ServiceError):
    code = "invalid_transition"


class WouldLeaveNoModel(ServiceError):
    code = "would_leave_no_model"


class PreconditionFailed(ServiceError):
    code = "precondition_failed"


class PreconditionRequired(ServiceError):
    code = "precondition_required"


class Unauthenticated(ServiceError):
    code = "unauthenticated"


class Forbidden(ServiceError):
    code = "forbidden"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class Unavailable(ServiceError):
    code = "unavailable"


class TooManyRequests(ServiceError):
    """A per-token limit (``max_pending_jobs_per_token``, ``max_stored_bytes_per_token``)."""

    code = "too_many_requests"
