"""The audit trail (release and admin): who changed what, when, why, and from what to what."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.changes import audit
from modelreg.web.common import PageArgs, UtcDateTime, list_schema, page_size, uow

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="Audit trail")


class AuditQuerySchema(PageArgs):
    actor = ma.fields.String(metadata={"description": "token name, exactly"})
    target = ma.fields.String(
        metadata={
            "description": "this target and everything under it, e.g. models/AImodel "
            "(ignoring case)"
        }
    )
    action = ma.fields.String(metadata={"description": "e.g. policy.put, version.transition"})
    since = ma.fields.AwareDateTime(
        default_timezone=UTC,
        metadata={"description": "ISO 8601; entries at or after it (UTC when no offset)"},
    )


class AuditEntrySchema(ma.Schema):
    id = ma.fields.Integer()
    at = UtcDateTime()
    actor = ma.fields.String()
    role = ma.fields.String()
    action = ma.fields.String()
    target = ma.fields.String()
    before = ma.fields.Dict(allow_none=True)
    after = ma.fields.Dict(allow_none=True)
    reason = ma.fields.String()
    request_id = ma.fields.String()


AuditListSchema = list_schema(AuditEntrySchema, "AuditList")


@blp.route("/audit")
class Audit(MethodView):
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """State-changing requests, newest first; filter by actor, target, action, since"""
        return audit.entries(
            uow(write=False),
            actor=args.get("actor"),
            target=args.get("target"),
            action=args.get("action"),
            since=args.get("since"),
            page_token=args.get("page_token"),
            page_size=page_size(args),
        )


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
