"""``create_app(settings)``: the Flask application, wired to its database and store."""

from __future__ import annotations

import re
import tempfile
from typing import IO, Any, cast

from flask import Flask, Request, request
from flask_cors import CORS
from flask_smorest import Api

from modelreg.access import audit_views as audit
from modelreg.access import token_views as tokens
from modelreg.config import Settings, load_settings
from modelreg.db.session import Database
from modelreg.environments import views as champions
from modelreg.evaluation import dataset_views as datasets
from modelreg.evaluation import job_views as jobs
from modelreg.registry import views as models
from modelreg.runs import views as runs
from modelreg.storage.artifacts import IncomingFile, LocalArtifactStore
from modelreg.web import auth, error_responses, health, observability, openapi
from modelreg.web.common import Context, close_sessions, ctx
from modelreg.web.multipart import FastFormDataParser
from modelreg.web.token_cache import TokenCache

MULTIPART_OVERHEAD = 1024 * 1024
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The only routes that take multipart/form-data (a file upload); every other body is
# JSON. An HTML form can post multipart or urlencoded bodies across origins without a
# CORS preflight: those are refused everywhere else.
UPLOAD_ROUTES = {("POST", "runs.Runs"), ("POST", datasets.UPLOAD_ENDPOINT)}


class UploadRequest(Request):
    """Streams uploaded file parts straight into the artifact store's temp area.

    The multipart parser writes into an :class:`IncomingFile`, which hashes and
    counts as it goes, so an upload is written once and never held in memory.
    """

    form_data_parser_class = FastFormDataParser

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        c = ctx()
        incoming = c.store.begin_upload(_max_file_bytes(self))
        self.__dict__.setdefault("incoming_files", []).append(incoming)
        return cast(IO[bytes], incoming)


def _max_file_bytes(req: Request) -> int:
    """The size limit of an uploaded file: dataset content has its own."""
    settings = ctx().settings
    if req.endpoint == datasets.UPLOAD_ENDPOINT:
        return settings.max_dataset_bytes
    return settings.max_artifact_bytes


def _too_large(limit: int) -> Any:
    return error_responses.error_response(
        413, "payload_too_large", f"request body is larger than {limit} bytes", {"limit": limit}
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse_control_characters() -> Any:
    """No name, version or parameter holds a control character; NUL in particular
    would reach PostgreSQL, which refuses it in text. One answer on every database."""
    if _CONTROL.search(request.path) or any(
        _CONTROL.search(key) or _CONTROL.search(value)
        for key, value in request.args.items(multi=True)
    ):
        return error_responses.error_response(
            400, "bad_request", "the URL contains control characters (percent-encoded or not)"
        )
    return None


def _limit_body() -> Any:
    """Cap the body before anything reads it, and refuse bodies we cannot parse."""
    if request.method in ("GET", "HEAD") and not request.content_length:
        return None  # the serving layers' polls: nothing to check
    if request.url_rule is None:
        return None  # no such route (404) or method (405): the body is never read
    settings = ctx().settings
    upload = (request.method, request.endpoint) in UPLOAD_ROUTES
    if upload and request.mimetype == "multipart/form-data":
        request.max_content_length = _max_file_bytes(request) + MULTIPART_OVERHEAD
    else:
        request.max_content_length = settings.max_json_bytes
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    accepted = {"application/json", "multipart/form-data"} if upload else {"application/json"}
    if request.method in _BODY_METHODS and has_body and request.mimetype not in accepted:
        return error_responses.error_response(
            415,
            "unsupported_media_type",
            f"send {' or '.join(sorted(accepted))} here, not {request.mimetype!r}",
            {"accepted": sorted(accepted)},
        )
    if request.content_length and request.content_length > request.max_content_length:
        return _too_large(request.max_content_length)
    if has_body and request.content_length is None and request.mimetype == "application/json":
        # A streamed (chunked) body has no length to check up front, and Werkzeug's
        # capped stream would hand the parser truncated JSON (a 400). Read it within the
        # cap now; a byte left beyond it means the body is too large.
        limit = settings.max_json_bytes
        if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
            return _too_large(limit)
    return None


def _discard_uploads(_exc: BaseException | None) -> None:
    # Committed uploads were renamed away already; this removes what was not.
    for incoming in request.__dict__.get("incoming_files", []):
        cast(IncomingFile, incoming).discard()


def _cors(app: Flask, origins: list[str]) -> None:
    """CORS grants for the configured origins only (none by default).

    Each origin matches exactly (case-insensitively), never as a pattern or prefix.
    Browsers send tokens only when the page's script adds them: no cookies, so no
    credentials mode. A preflight from a configured origin needs no token
    (``modelreg.web.auth``); the request that follows does.
    """
    if not origins:
        return
    CORS(
        app,
        origins=[re.compile(re.escape(o) + r"\Z", re.IGNORECASE) for o in origins],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "If-None-Match",
            "X-Request-ID",
        ],
        expose_headers=["ETag", "X-Request-ID", "Location", "Content-Disposition"],
        supports_credentials=False,
        always_send=False,
        max_age=600,
    )


class _Api(Api):  # type: ignore[misc]
    # Read while Api() initializes: the documented error responses must show our shape.
    ERROR_SCHEMA = error_responses.ApiErrorSchema
    # Each operation lists its error statuses (modelreg.web.openapi): no catch-all.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _openapi_json(self) -> Any:
        return openapi.json_response()  # the document, completed


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    # No static route: every route must be declared in modelreg.web.route_roles.
    app = Flask("modelreg", static_folder=None)
    # "/api/v1//models" is not "/api/v1/models": a 404, not a redirect (an HTML page).
    app.url_map.merge_slashes = False
    app.request_class = UploadRequest
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        API_TITLE="modelreg",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings.max_artifact_bytes + MULTIPART_OVERHEAD,
    )
    db = Database(settings.resolved_database_url, settle_seconds=settings.settle_seconds)
    app.extensions["modelreg"] = Context(
        settings=settings,
        db=db,
        store=LocalArtifactStore(settings.resolved_artifact_root),
        token_cache=TokenCache(db, settings.token_cache_seconds),
        admin_token_digest=settings.admin_token_digest,
    )

    api = _Api(app, spec_kwargs={"info": {"description": "Model registry and promotion service"}})
    # Each feature registers its own routes, in the order the OpenAPI document lists them.
    for feature in (models, runs, datasets, champions, jobs, tokens, audit):
        feature.init_app(api)
    health.init_app(app)

    # Timing first (and its access log last): it spans every other hook.
    observability.register(app, access_log=settings.access_log)
    # Who is calling comes first: an anonymous caller learns nothing, not even limits.
    auth.register(app)
    app.before_request(_refuse_control_characters)
    app.before_request(_limit_body)
    # After Api(): flask-smorest registers its own handler, ours must win.
    error_responses.register(app)
    app.teardown_request(_discard_uploads)
    _cors(app, settings.cors_origin_list)
    app.teardown_appcontext(close_sessions)
    return app


def openapi_snapshot() -> str:
    """The OpenAPI document of an application with default settings, in the form
    ``docs/openapi.json`` is committed in (``modelreg openapi`` prints it; nothing is stored)."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(load_settings(environ={}, data_dir=data_dir))
        try:
            return openapi.dumps(openapi.document(app))
        finally:
            app.extensions["modelreg"].db.dispose()
