"""What every blueprint shares: the request context, paging arguments, list schemas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import current_app, g
from sqlalchemy.orm import Session

from service.artifacts import ArtifactStore
from service.clock import iso
from service.config import Settings
from service.db.session import Database
from service.names import NAME_PATTERN


@dataclass
class Context:
    settings: Settings
    db: Database
    store: ArtifactStore


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


class UtcDateTime(ma.fields.Field):  # type: ignore[type-arg]
    """An aware-UTC ISO 8601 timestamp, also from SQLite's naive datetimes."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso(value)


def actor() -> str:
    """Who is acting: the name of the request's token (see ``service.api.auth``)."""
    caller = g.get("caller")
    return str(caller.name) if caller is not None else "anonymous"


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


def Name(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=ma.validate.Regexp(
            NAME_PATTERN, error="1-100 letters, digits, '.', '_' or '-', starting alphanumeric"
        ),
        **kwargs,
    )


def _storable(value: Any, path: str = "") -> None:
    """Free-form JSON must survive storage and come back as valid JSON: no NaN or
    Infinity anywhere (JSON has neither; PostgreSQL refuses them), no NUL character."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ma.ValidationError(f"{path or 'value'}: numbers must be finite")
    if isinstance(value, str) and "\x00" in value:
        raise ma.ValidationError(f"{path or 'value'}: NUL characters are not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(key, path)
            _storable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _storable(item, f"{path}[{index}]")


def json_dict(**kwargs: Any) -> ma.fields.Dict:
    """A free-form JSON object (tags, params, source)."""
    return ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Raw(allow_none=True),
        validate=_storable,
        **kwargs,
    )
