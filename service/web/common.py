"""What every blueprint shares: the request context, paging arguments, list schemas."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import current_app, g, request
from sqlalchemy.orm import Session

from modelreg.clock import iso
from modelreg.config import Settings
from modelreg.db.session import Database
from modelreg.errors import BadRequest, ValidationFailed, summarize
from modelreg.names import NAME_PATTERN, NAME_RE
from modelreg.storage.artifacts import ArtifactStore
from modelreg.web.token_cache import TokenCache


@dataclass
class Context:
    settings: Settings
    db: Database
    store: ArtifactStore
    token_cache: TokenCache
    # The admin token's SHA-256, once per app: requests compare digests, never secrets.
    admin_token_digest: str = ""


def ctx() -> Context:
    context: Context = current_app.extensions["modelreg"]
    return context


def uow(*, write: bool) -> Session:
    """The request's session (one for reads, one for writes), closed at teardown.

    Handlers return rows and the response schema serializes them while the
    session is still open; whatever was not committed is rolled back.
    """
    key = "_uow_write" if write else "_uow_read"
    session: Session | None = g.get(key)
    if session is None:
        session = ctx().db.session(write=write)
        setattr(g, key, session)
    return session


def close_sessions(_exc: BaseException | None) -> None:
    for key in ("_uow_write", "_uow_read"):
        session: Session | None = g.pop(key, None)
        if session is not None:
            session.rollback()
            session.close()


class UtcDateTime(ma.fields.DateTime):
    """An aware-UTC ISO 8601 timestamp, also from SQLite's naive datetimes (documented
    as ``string``, ``date-time``)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso(value)


# The OpenAPI type of a computed (``Function``) field, which marshmallow cannot infer.
STRING: dict[str, Any] = {"type": "string"}


class PageArgs(ma.Schema):
    page_size = ma.fields.Integer(
        validate=ma.validate.Range(min=1), metadata={"description": "items per page"}
    )
    page_token = ma.fields.String(metadata={"description": "opaque token from the previous page"})


def page_size(args: dict[str, Any]) -> int:
    settings = ctx().settings
    size = int(args.get("page_size") or settings.default_page_size)
    return min(size, settings.max_page_size)


def list_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A ``{items, next_page_token}`` schema for ``item``."""
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item), required=True),
            "next_page_token": ma.fields.String(allow_none=True),
        },
        name=name,
    )


_NAME_ERROR = "must be 1-100 letters, digits, '.', '_' or '-', starting alphanumeric"


def _whole_name(value: str) -> None:
    # Regexp matches "$" before a trailing newline: "f1\n" must not pass for "f1".
    # Any other mismatch the Regexp has already reported, once is enough.
    if NAME_RE.match(value) and not NAME_RE.fullmatch(value):
        raise ma.ValidationError(_NAME_ERROR)
    name_length_error(value)


def name_length_error(value: str) -> None:
    """``max_name_length`` (a setting, so read per request): a ValidationError beyond it."""
    limit = ctx().settings.max_name_length
    if len(value) > limit:
        raise ma.ValidationError(f"at most {limit} characters (max_name_length)")


def check_name_length(field: str, value: str) -> None:
    """``max_name_length`` for a name outside a schema (a path segment): 422 naming ``field``."""
    try:
        name_length_error(value)
    except ma.ValidationError as exc:
        raise ValidationFailed.field(field, str(exc.messages[0])) from None


def Name(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        # The Regexp documents the pattern in the OpenAPI schema; _whole_name enforces it.
        validate=[ma.validate.Regexp(NAME_PATTERN, error=_NAME_ERROR), _whole_name],
        **kwargs,
    )


# Free-form JSON (tags, params, source) nests at most this deep, and its integers fit
# in 64 bits (what other JSON readers, PostgreSQL's bigint and SQLite can hold).
MAX_JSON_DEPTH = 32
_INT_RANGE = range(-(2**63), 2**63)


def _storable(value: Any, path: str = "", depth: int = 0) -> None:
    """Free-form JSON must survive storage and come back as valid JSON: no NaN or
    Infinity anywhere (JSON has neither; PostgreSQL refuses them), no NUL character,
    no integer beyond 64 bits, no nesting deeper than ``MAX_JSON_DEPTH``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ma.ValidationError(f"{path or 'value'}: numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT_RANGE:
        raise ma.ValidationError(f"{path or 'value'}: integers must fit in 64 bits")
    if isinstance(value, str) and "\x00" in value:
        raise ma.ValidationError(f"{path or 'value'}: NUL characters are not allowed")
    if isinstance(value, dict | list) and depth >= MAX_JSON_DEPTH:
        raise ma.ValidationError(f"{path or 'value'}: nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(key, path, depth + 1)
            _storable(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{path}[{index}]", depth + 1)


def json_dict(**kwargs: Any) -> ma.fields.Dict:
    """A free-form JSON object (tags, params, source)."""
    return ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Raw(allow_none=True),
        validate=_storable,
        **kwargs,
    )


# -- OpenAPI fragments of the conditional and streamed responses ----------------------


def header_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "in": "header",
        "name": name,
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def response_header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


IF_NONE_MATCH = header_parameter(
    "If-None-Match", "the ETag you hold: 304 Not Modified while it is still current"
)
ETAG = response_header("the representation's entity tag (quoted)")
RANGE_NOT_SATISFIABLE = "the Range lies outside the content"


def download_doc(
    media_types: list[str], what: str, extra_headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The OpenAPI of a streamed, content-addressed download (``ETag`` = sha256), which
    answers ``If-None-Match`` (304) and ``Range`` (206, or 416 beyond the end)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    headers = {
        "ETag": response_header("the content's sha256, quoted"),
        "Content-Disposition": response_header("attachment; filename=…"),
        "Accept-Ranges": response_header("bytes"),
        **(extra_headers or {}),
    }
    return {
        "parameters": [
            IF_NONE_MATCH,
            header_parameter("Range", "bytes=first-last: 206 Partial Content with those bytes"),
        ],
        "responses": {
            "200": {
                "description": f"{what}, streamed",
                "content": {media_type: binary for media_type in media_types},
                "headers": headers,
            },
            "206": {
                "description": f"the requested bytes of {what}",
                "content": {media_type: binary for media_type in media_types},
                "headers": {**headers, "Content-Range": response_header("bytes first-last/size")},
            },
            "304": {
                "description": "Not modified: If-None-Match matched",
                "headers": {"ETag": headers["ETag"]},
            },
        },
    }


def multipart_json(schema: ma.Schema, what: str, *, missing: str | None = None) -> dict[str, Any]:
    """The JSON part ``metadata`` of a multipart upload, loaded with ``schema``.

    Absent or empty: ``{}``, or a 422 saying ``missing`` when the part is required.
    Not JSON: 400; not an object or invalid: 422 naming the fields.
    """
    raw: Any = request.form.get("metadata")
    if raw is None and "metadata" in request.files:
        raw = request.files["metadata"].read().decode("utf-8", "replace")
    if not raw and missing is not None:
        raise ValidationFailed.field("metadata", missing)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise BadRequest("metadata is not valid JSON", {"metadata": ["invalid JSON"]}) from None
    if not isinstance(data, dict):
        raise ValidationFailed.field("metadata", "must be a JSON object")
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ma.ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"metadata": exc.messages}
        summary = summarize(messages)
        raise ValidationFailed(f"in the {what} metadata, {summary}", messages) from None
    return loaded


class OutcomeSchema(ma.Schema):
    """What a change did to one environment's champion (every change answers with these)."""

    environment = ma.fields.String()
    model = ma.fields.String()
    before = ma.fields.Integer(allow_none=True)
    after = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String()
    changed = ma.fields.Boolean()
