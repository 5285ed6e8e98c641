"""Exceptions of the client: one per kind of API error, each carrying the JSON error."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """An API error: ``status``, ``code``, ``message`` and ``details`` of the JSON error."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}

    def __str__(self) -> str:
        prefix = f"{self.status} {self.code}: " if self.status else ""
        return f"{prefix}{self.message}"


class Unreachable(RegistryError):
    """No answer: connection refused, DNS, timeout."""


class FormatNotAllowed(RegistryError):
    """``ChampionLoader`` refuses the champion's artifact format (code ``format_not_allowed``),
    before it downloads or loads anything: the policy's ``allowed_formats`` exclude it, or
    it is pickle/joblib and the loader has ``allow_pickle=False``."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code="format_not_allowed", details=details)


class BadRequest(RegistryError):
    pass


class Unauthenticated(RegistryError):
    pass


class Forbidden(RegistryError):
    pass


class NotFound(RegistryError):
    pass


class NoEligibleModel(NotFound):
    """The environment has a policy but no run is eligible (404 ``no_eligible_model``)."""


class Conflict(RegistryError):
    """409: ``already_exists``, ``invalid_transition``, ``would_leave_no_model`` or
    ``conflict`` (a version that still has runs)."""


class PreconditionFailed(RegistryError):
    pass


class PreconditionRequired(RegistryError):
    pass


class PayloadTooLarge(RegistryError):
    pass


class UnsupportedMediaType(RegistryError):
    pass


class ValidationError(RegistryError):
    pass


class TooManyRequests(RegistryError):
    """429: a per-token limit (pending jobs, stored bytes); ``details`` says which."""


class Unavailable(RegistryError):
    pass


class ServerError(RegistryError):
    pass


_BY_STATUS: dict[int, type[RegistryError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    428: PreconditionRequired,
    429: TooManyRequests,
    503: Unavailable,
}


def error_for(status: int, body: Any) -> RegistryError:
    """The exception for an error response (``body``: its parsed JSON, if any).

    >>> e = error_for(404, {"error": {"code": "no_eligible_model", "message": "none"}})
    >>> type(e).__name__, e.code, str(e)
    ('NoEligibleModel', 'no_eligible_model', '404 no_eligible_model: none')
    >>> type(error_for(502, None)).__name__
    'ServerError'
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "error", "message": f"HTTP {status}", "details": {}}
    code = str(error.get("code", "error"))
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else RegistryError)
    if code == "no_eligible_model":
        cls = NoEligibleModel
    details = error.get("details")
    return cls(
        str(error.get("message", "")),
        status=status,
        code=code,
        details=details if isinstance(details, dict) else {},
    )
