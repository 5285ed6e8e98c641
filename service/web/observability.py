"""``GET /metrics`` (Prometheus) and the per-request timing and access log.

``/metrics`` lives outside ``/api/v1``, like the health checks, but is not
open: it needs a ``reader`` token (``modelreg.web.route_roles``). :func:`register`
installs two hooks around every request: the first ``before_request`` notes
the time, the last ``after_request`` observes the latency histogram under the
route template and, with ``access_log`` on, writes the request's JSON line
(``modelreg.runtime.logs``). The timed span is routing to response headers: a streamed
body (an artifact download) is not included.
"""

from __future__ import annotations

import logging
from time import perf_counter

from flask import Blueprint, Flask, Response, g, request

from modelreg.runtime import prometheus as metrics
from modelreg.runtime.logs import ACCESS_LOGGER
from modelreg.web.auth import REQUEST_ID_HEADER
from modelreg.web.common import ctx

blp = Blueprint("metrics", __name__)

_access = logging.getLogger(ACCESS_LOGGER)
_STARTED = "modelreg.started"


@blp.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition(ctx().db, request.headers.get("Accept"))
    return Response(body, headers={"Content-Type": content_type})


def _start() -> None:
    request.environ[_STARTED] = perf_counter()


def _observe(response: Response) -> Response:
    # One proxy lookup instead of one per attribute: this runs on every request.
    req = request._get_current_object()  # type: ignore[attr-defined]
    started: float | None = req.environ.get(_STARTED)
    if started is not None:
        rule = req.url_rule
        metrics.observe_request(
            rule.rule if rule is not None else None,
            req.method,
            response.status_code,
            perf_counter() - started,
        )
    return response


def _observe_and_log(response: Response) -> Response:
    req = request._get_current_object()  # type: ignore[attr-defined]
    started: float | None = req.environ.get(_STARTED)
    if started is None:
        return response
    elapsed = perf_counter() - started
    rule = req.url_rule
    route = rule.rule if rule is not None else None
    status = response.status_code
    metrics.observe_request(route, req.method, status, elapsed)
    caller = g.get("caller")
    path = req.path  # never the query string: it may hold a token sent there by mistake
    _access.info(
        "%s %s %s",
        req.method,
        path,
        status,
        extra={
            "fields": {
                "method": req.method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "request_id": response.headers.get(REQUEST_ID_HEADER),
                "actor": caller.name if caller is not None else None,
            }
        },
    )
    return response


def register(app: Flask, *, access_log: bool) -> None:
    """Call before any other hook is registered: the timing then spans them all."""
    app.register_blueprint(blp)  # /metrics
    app.before_request(_start)
    app.after_request(_observe_and_log if access_log else _observe)
