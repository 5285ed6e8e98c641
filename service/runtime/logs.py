"""Structured logs: one JSON object per line, for the service's own loggers.

``configure()`` (run by ``modelreg serve`` and ``modelreg worker``) sends the
records of the ``modelreg…`` and ``service…`` loggers to stderr as JSON:
``ts``, ``level``, ``logger``, ``message``, ``pid``, the request id when the record was
written while serving a request, whatever :func:`context` holds (the worker's
``job_id``), the fields passed as ``extra={"fields": {...}}``, and ``exc`` for a
traceback. The access log (``access_log = true``) is such a record per request,
from ``modelreg.access``: method, route template, path (never the query string,
which may hold a credential sent by mistake), status, duration_ms, request_id
and actor (the token's name). No header is ever logged.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

LOGGERS = ("modelreg",)
ACCESS_LOGGER = "modelreg.access"

_context: ContextVar[dict[str, Any] | None] = ContextVar("modelreg_log_context", default=None)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record this thread logs inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


# Set by the HTTP layer for the request a thread is serving (no Flask import here:
# the evaluation worker logs through this module too).
_request_id: ContextVar[str | None] = ContextVar("modelreg_request_id", default=None)


def bind_request(request_id: str | None) -> None:
    """Name the request this thread serves from now on (``None``: no request)."""
    _request_id.set(request_id)


def request_id() -> str | None:
    """The current request's id, when there is a request."""
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if not (fields and "request_id" in fields):
            rid = request_id()
            if rid:
                doc["request_id"] = rid
        context = _context.get()
        if context:
            doc.update(context)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """JSON lines on ``stream`` (stderr) for the service's loggers; idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
