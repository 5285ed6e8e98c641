"""API tokens (admin): create (the secret is shown once), list, show, revoke."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.access import tokens
from modelreg.db.models import MAX_ID
from modelreg.roles import ROLES
from modelreg.web.auth import caller
from modelreg.web.common import (
    STRING,
    Name,
    PageArgs,
    UtcDateTime,
    ctx,
    list_schema,
    page_size,
    uow,
)
from modelreg.web.error_responses import ApiErrorSchema

blp = Blueprint("tokens", __name__, url_prefix="/api/v1", description="API tokens (admin)")


class TokenCreateSchema(ma.Schema):
    name = Name(required=True)
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    expires_at = ma.fields.AwareDateTime(load_default=None, allow_none=True)


class TokenSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    role = ma.fields.String()
    prefix = ma.fields.String(metadata={"description": "the secret's first characters"})
    state = ma.fields.Function(
        tokens.state, metadata={**STRING, "enum": ["active", "expired", "revoked"]}
    )
    created_at = UtcDateTime()
    created_by = ma.fields.String()
    expires_at = UtcDateTime(allow_none=True)
    revoked_at = UtcDateTime(allow_none=True)
    revoked_by = ma.fields.String(allow_none=True)


class CreatedTokenSchema(TokenSchema):
    secret = ma.fields.String(metadata={"description": "shown once; only its hash is stored"})


TokenListSchema = list_schema(TokenSchema, "TokenList")


class _Created:
    """A new token with its secret, for the one response that shows it."""

    def __init__(self, created: tokens.Created) -> None:
        self._token = created.token
        self.secret = created.secret

    def __getattr__(self, name: str) -> Any:
        return getattr(self._token, name)


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.arguments(TokenCreateSchema)
    @blp.response(201, CreatedTokenSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create a token; its secret is in this response and nowhere else"""
        s = uow(write=True)
        created = tokens.create(
            s, body["name"], body["role"], expires_at=body["expires_at"], caller=caller()
        )
        return _Created(created)

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, TokenListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Tokens, without secrets"""
        return tokens.list_tokens(uow(write=False), args.get("page_token"), page_size(args))


@blp.route(f"/tokens/<int(min=1, max={MAX_ID}):token_id>")
class TokenView(MethodView):
    @blp.response(200, TokenSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, token_id: int) -> Any:
        """One token, without its secret"""
        return tokens.get(uow(write=False), token_id)

    @blp.response(200, TokenSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def delete(self, token_id: int) -> Any:
        """Revoke a token: refused from this moment on"""
        s = uow(write=True)
        token = tokens.revoke(s, token_id, caller=caller())
        # This process forgets it now; the others when the commit's NOTIFY reaches them.
        ctx().token_cache.forget_all()
        return token


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
