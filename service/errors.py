"""One hierarchy of errors that carry data; no HTTP here.

The service layer raises these with a stable ``code``, a human message and
machine-readable ``details``. ``modelreg.web.error_responses`` is the one place that maps
them to status codes and the JSON error shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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
    """Input that is well-formed but not acceptable; ``details`` maps fields to messages.

    Build it with :meth:`field` or :meth:`fields`: the message is then written from the
    details by :func:`summarize`. A field's message is either a predicate that the
    field's name completes ("must be in the future") or a sentence that names the field
    ("a reason is required for …"); anything else is shown after the field's name.
    """

    code = "validation_error"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls.fields({name: [message]})

    @classmethod
    def fields(cls, details: Mapping[str, Any]) -> ValidationFailed:
        return cls(summarize(details), dict(details))


# Messages that marshmallow (and so webargs) writes for any field, said with the name.
# Written out rather than imported: the errors the services raise load no web library
# (tests/unit/test_error_messages.py checks them against marshmallow's own).
LIBRARY_PHRASES = {
    "Missing data for required field.": "{field} is required",
    "Field may not be null.": "{field} may not be null",
    "Unknown field.": "unknown field {field}",
}
# Predicates that read as a sentence once the field's name comes first.
_PREDICATES = {
    "must ": "",
    "may ": "",
    "cannot ": "",
    "not a valid ": "is ",
    "at most ": "may have ",
}
_SHOWN_FIELDS = 8


def summarize(details: Mapping[str, Any]) -> str:
    """The ``message`` of a validation error: one sentence, not a copy of ``details``.

    One field: its message as a sentence, the field's name added where the message
    does not already say it. Several: how many, and which (nested ones by dotted path).

    >>> summarize({"reason": ["a reason is required for a transition into Production"]})
    'a reason is required for a transition into Production'
    >>> summarize({"sha256": ["must be 64 hexadecimal characters"]})
    'sha256 must be 64 hexadecimal characters'
    >>> summarize({"name": ["Missing data for required field."]})
    'name is required'
    >>> summarize({"direction": ["Must be one of: max, min."]})
    'direction must be one of: max, min'
    >>> summarize({"target": ["column 'y' is not in the file"]})
    "target: column 'y' is not in the file"
    >>> summarize({"metrics": {"f1": ["must be a finite number"]}})
    'metrics.f1 must be a finite number'
    >>> summarize({"metrics": {"f1": {"value": ["Special numeric values are not permitted."]}}})
    'metrics.f1: Special numeric values are not permitted.'
    >>> summarize({"version": ["Not a valid string."], "nmae": ["Unknown field."]})
    '2 fields are invalid: nmae, version'
    """
    leaves = list(_leaves(details))
    paths = sorted({path for path, _ in leaves})
    if not paths:
        return "the request is invalid"
    if len(paths) == 1:
        # dict.fromkeys: a message said twice (two validators agreeing) is said once.
        return "; ".join(dict.fromkeys(_sentence(path, message) for path, message in leaves))
    shown = ", ".join(paths[:_SHOWN_FIELDS])
    more = f" and {len(paths) - _SHOWN_FIELDS} more" if len(paths) > _SHOWN_FIELDS else ""
    return f"{len(paths)} fields are invalid: {shown}{more}"


def _leaves(details: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in details.items():
        # A marshmallow Dict reports {entry: {"key": [...], "value": [...]}}: both are
        # said of the entry ("metrics.f1 is not a valid number").
        dict_entry = bool(prefix) and key in ("key", "value")
        path = prefix if dict_entry else f"{prefix}.{key}" if prefix else str(key)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, Mapping):
                yield from _leaves(item, path)
            else:
                yield path, str(item)


def _sentence(field: str, message: str) -> str:
    text = " ".join(message.split())
    if field.startswith("_"):  # marshmallow's "_schema", webargs' "_json": not a field
        return f"invalid request: {text}"
    if text in LIBRARY_PHRASES:
        return LIBRARY_PHRASES[text].format(field=field)
    lowered = text[:1].lower() + text[1:]
    for predicate, verb in _PREDICATES.items():
        if lowered.startswith(predicate):
            return f"{field} {verb}{lowered.removesuffix('.')}"
    if text[:1].islower() and _names(field, text):
        return text
    return f"{field}: {text}"


def _names(field: str, text: str) -> bool:
    """Whether ``text`` mentions the (top-level) field: "run 3 is not a run of m" does
    for ``run_id``; a library's message ("Not a valid number.") never does."""
    top = field.split(".", 1)[0].lower()
    words = [w.removesuffix("s") for w in re.split(r"[^a-z]+", top) if len(w) > 2]
    return any(word in text.lower() for word in words)


class NotFound(ServiceError):
    code = "not_found"


class NoEligibleModel(ServiceError):
    code = "no_eligible_model"


class AlreadyExists(ServiceError):
    code = "already_exists"


class Conflict(ServiceError):
    """The current state forbids the change until something else is done first (a
    version that still has runs)."""

    code = "conflict"


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
