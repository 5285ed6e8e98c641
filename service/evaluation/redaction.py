"""What a job record shows to callers who are not ``admin``.

An evaluation runs an uploaded model, and whatever that model printed or raised
(its output tail, a traceback, an exception message) lands in the job's record.
That text may hold what the model could read: a secret, a path, a row of the test
set. Admins see the whole record; everyone else sees the outcome — metrics, skipped
metrics, timings, exit code, limits — with every string bounded and redacted, and
no child output at all.
"""

from __future__ import annotations

import re
from typing import Any

# Child output, verbatim: admins only.
CHILD_OUTPUT_KEYS = frozenset({"output_tail", "traceback", "stderr", "stdout", "output"})
MAX_TEXT = 300

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials in URLs: scheme://user:password@host
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), "[redacted]@"),
    # name=value / name: value where the name says secret
    (
        re.compile(
            r"(?i)\b([\w-]*(?:password|passwd|secret|token|api[_-]?key|credential)[\w-]*)"
            r"(\s*[=:]\s*)(\S+)"
        ),
        r"\1\2[redacted]",
    ),
    # Bearer credentials and the registry's own tokens
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer [redacted]"),
    (re.compile(r"\bmr_[A-Za-z0-9_-]{6,}"), "mr_[redacted]"),
    # Long runs of key-like characters with letters and digits (keys, tokens, hashes)
    (
        re.compile(
            r"\b(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])[A-Za-z0-9+/_-]{32,}={0,2}"
        ),
        "[redacted]",
    ),
    # Absolute paths (the server's layout, the test set's location)
    (re.compile(r"(?<![\w.:/])(?:/[\w.@+-]+){2,}/?"), "<path>"),
)


def redact_text(text: str) -> str:
    """A string with secrets and paths masked, at most ``MAX_TEXT`` characters.

    >>> redact_text("open /srv/data/holdout.csv failed: token=abc")
    'open <path> failed: token=[redacted]'
    >>> redact_text("postgresql://app:hunter2@db/x and mr_0123456789abcdef")
    'postgresql://[redacted]@db/x and mr_[redacted]'
    >>> redact_text("accuracy needs labels")
    'accuracy needs labels'
    """
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:
        return None
    if isinstance(value, dict):
        return {
            str(k): _redact(v, depth + 1) for k, v in value.items() if k not in CHILD_OUTPUT_KEYS
        }
    if isinstance(value, list):
        return [_redact(v, depth + 1) for v in value[:100]]
    return value


def job_result(result: dict[str, Any] | None, *, admin: bool) -> dict[str, Any] | None:
    """A job's ``result`` as the caller may see it."""
    if result is None or admin:
        return result
    redacted: dict[str, Any] = _redact(result)
    return redacted


def job_error(error: str | None, *, admin: bool) -> str | None:
    """A job's ``error`` as the caller may see it."""
    if error is None or admin:
        return error
    return redact_text(error)
