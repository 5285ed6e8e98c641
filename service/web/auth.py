"""Who is calling, and may they? Runs before every handler.

A request carries its token only in ``Authorization: Bearer <secret>``: a token in
the query string is refused (URLs end up in logs, histories and referrers).
The secret is looked up by its SHA-256 on a unique index (one indexed read on
the lookup pool; on PostgreSQL remembered until any token changes:
``modelreg.web.token_cache``); ``MODELREG_ADMIN_TOKEN``, when set, is accepted as an admin
token without a row (compared by its SHA-256: ``modelreg serve`` keeps no other
form). Missing, malformed, unknown, expired and revoked tokens
are 401; a role below the route's (``modelreg.web.route_roles``) is 403. ``/healthz``
and ``/readyz`` stay open, and so does a CORS preflight from an origin granted
CORS (``cors_origins``): browsers send those without credentials.
``modelreg serve --insecure-no-auth`` (loopback only) makes every caller an
anonymous admin.
"""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import UTC

from flask import Flask, Response, g, request
from sqlalchemy import bindparam, select

from modelreg.db.models import ApiToken, utcnow
from modelreg.errors import BadRequest, Forbidden, Unauthenticated
from modelreg.roles import Caller, allows, secret_digest
from modelreg.runtime import logs
from modelreg.web.common import ctx
from modelreg.web.route_roles import OPEN_ENDPOINTS, required_role

REQUEST_ID_HEADER = "X-Request-ID"
ADMIN_TOKEN_NAME = "admin-token"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BEARER_RE = re.compile(r"^Bearer +([\x21-\x7e]{1,512})$", re.IGNORECASE)
# Query parameters that carry credentials in other APIs: refused, never looked at.
_URL_CREDENTIALS = {"token", "access_token", "api_key", "apikey", "auth", "authorization"}

_TOKEN = ApiToken.__table__.c
_TOKEN_LOOKUP = select(_TOKEN.name, _TOKEN.role, _TOKEN.expires_at, _TOKEN.revoked_at).where(
    _TOKEN.secret_sha256 == bindparam("digest")
)


def _request_id() -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex


def _caller(request_id: str) -> Caller:
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthenticated("this API needs a token: send 'Authorization: Bearer <token>'")
    match = _BEARER_RE.fullmatch(header.strip())
    if match is None:
        raise Unauthenticated("malformed Authorization header: expected 'Bearer <token>'")
    secret = match.group(1)
    digest = secret_digest(secret)
    admin = ctx().admin_token_digest
    if admin and hmac.compare_digest(digest, admin):
        return Caller(ADMIN_TOKEN_NAME, "admin", request_id)
    row = ctx().token_cache.lookup(_TOKEN_LOOKUP, digest)
    if row is None:
        raise Unauthenticated("unknown token")
    if row.revoked_at is not None:
        raise Unauthenticated("this token was revoked")
    expires = row.expires_at
    if (
        expires is not None
        and (expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires) <= utcnow()
    ):
        raise Unauthenticated("this token has expired")
    return Caller(row.name, row.role, request_id)


def _is_cors_preflight() -> bool:
    """An ``OPTIONS`` preflight from an origin granted CORS (``cors_origins``)."""
    origin = request.headers.get("Origin", "")
    return (
        request.method == "OPTIONS"
        and "Access-Control-Request-Method" in request.headers
        and origin.lower() in {o.lower() for o in ctx().settings.cors_origin_list}
    )


def authenticate() -> None:
    request_id = _request_id()
    g.request_id = request_id
    logs.bind_request(request_id)
    endpoint = request.url_rule.endpoint if request.url_rule is not None else None
    if endpoint in OPEN_ENDPOINTS:
        return
    if ctx().settings.insecure_no_auth:
        g.caller = Caller("anonymous", "admin", request_id)
        return
    if _URL_CREDENTIALS & {key.lower() for key in request.args}:
        raise BadRequest(
            "tokens are accepted only in the Authorization header, never in the URL",
            {"query": sorted(_URL_CREDENTIALS & {k.lower() for k in request.args})},
        )
    if _is_cors_preflight():
        return  # browsers send preflights without credentials; the request itself needs one
    caller = _caller(request_id)
    g.caller = caller
    if endpoint is None:
        return  # no such path: 404 (or 405), now that the caller is known
    required = required_role(endpoint, request.method)
    if required is not None and not allows(caller.role, required):
        raise Forbidden(
            f"this needs the {required!r} role; the token {caller.name!r} has {caller.role!r}",
            {"required": required, "role": caller.role},
        )


def _echo_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or _request_id()
    return response


def caller() -> Caller:
    """The request's caller (set before the handler ran)."""
    found: Caller | None = g.get("caller")
    return found or Caller("anonymous", "reader", g.get("request_id", ""))


def _unbind_request(_exc: BaseException | None) -> None:
    logs.bind_request(None)  # the thread serves the next request under its own id


def register(app: Flask) -> None:
    app.before_request(authenticate)
    app.after_request(_echo_request_id)
    app.teardown_request(_unbind_request)
