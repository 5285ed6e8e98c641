"""Registered models, versions and stage transitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.changes import champions
from modelreg.db.models import ModelVersion
from modelreg.policies.stages import STAGES
from modelreg.registry import services as registry
from modelreg.web.auth import caller
from modelreg.web.common import (
    STRING,
    Name,
    OutcomeSchema,
    PageArgs,
    UtcDateTime,
    json_dict,
    list_schema,
    page_size,
    uow,
)
from modelreg.web.error_responses import ApiErrorSchema

blp = Blueprint("models", __name__, url_prefix="/api/v1", description="Models and versions")


class VersionSchema(ma.Schema):
    model = ma.fields.Function(lambda v: v.model.name, metadata=STRING)
    version = ma.fields.String()
    canonical_version = ma.fields.String()
    is_prerelease = ma.fields.Boolean()
    stage = ma.fields.String()
    description = ma.fields.String()
    tags = json_dict()
    created_at = UtcDateTime()
    stage_changed_at = UtcDateTime()


class CreatedVersionSchema(VersionSchema):
    normalized_from = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "the version as written when it is stored in another spelling, "
            "its PEP 440 normal form (`v3` is stored as `3`); null when stored as written"
        },
    )


class ModelSchema(ma.Schema):
    name = ma.fields.String()
    description = ma.fields.String()
    tags = json_dict()
    created_at = UtcDateTime()
    versions = ma.fields.List(
        ma.fields.Nested(VersionSchema), metadata={"description": "in PEP 440 order"}
    )

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if attr == "versions":
            return registry.sorted_versions(obj)
        return super().get_attribute(obj, attr, default)


class ModelCreateSchema(ma.Schema):
    name = Name(required=True)
    description = ma.fields.String(load_default="")
    tags = json_dict(load_default=dict)


class VersionCreateSchema(ma.Schema):
    version = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    description = ma.fields.String(load_default="")
    tags = json_dict(load_default=dict)


class VersionQuerySchema(PageArgs):
    spec = ma.fields.String(metadata={"description": "PEP 440 specifier set, e.g. <=2.0"})
    stage = ma.fields.String(validate=ma.validate.OneOf(STAGES))
    prereleases = ma.fields.Boolean(
        load_default=False, metadata={"description": "let pre-releases match spec"}
    )


class TransitionSchema(ma.Schema):
    stage = ma.fields.String(required=True, validate=ma.validate.OneOf(STAGES))
    from_stage = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf(STAGES),
        metadata={"description": "the stage you saw: 409 invalid_transition if it moved since"},
    )
    reason = ma.fields.String(
        load_default="",
        metadata={"description": "required into or out of Production; audited"},
    )
    force = ma.fields.Boolean(load_default=False)


class TransitionResultSchema(ma.Schema):
    version = ma.fields.Nested(VersionSchema)
    champions = ma.fields.List(ma.fields.Nested(OutcomeSchema))


ModelListSchema = list_schema(ModelSchema, "ModelList")
VersionListSchema = list_schema(VersionSchema, "VersionList")


@dataclass(frozen=True)
class TransitionResult:
    version: ModelVersion
    champions: list[champions.Outcome]


@dataclass(frozen=True)
class CreatedVersion:
    """A new version, and how the client wrote it."""

    row: ModelVersion
    written: str

    def __getattr__(self, name: str) -> Any:
        # The version's own fields, for VersionSchema.
        if name == "row":
            raise AttributeError(name)
        return getattr(self.row, name)

    @property
    def normalized_from(self) -> str | None:
        return None if self.written == self.row.version else self.written


@blp.route("/models")
class Models(MethodView):
    @blp.arguments(ModelCreateSchema)
    @blp.response(201, ModelSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Register a model"""
        return registry.create_model(
            uow(write=True), body["name"], body["description"], body["tags"], caller=caller()
        )

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ModelListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List models"""
        return registry.list_models(uow(write=False), args.get("page_token"), page_size(args))


@blp.route("/models/<model>")
class Model(MethodView):
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, model: str) -> Any:
        """One model, with its versions"""
        return registry.get_model(uow(write=False), model)


@blp.route("/models/<model>/versions")
class Versions(MethodView):
    @blp.arguments(VersionCreateSchema)
    @blp.response(201, CreatedVersionSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any], model: str) -> Any:
        """Register a version (stage None), stored in its PEP 440 normal form"""
        created = registry.create_version(
            uow(write=True),
            model,
            body["version"],
            body["description"],
            body["tags"],
            caller=caller(),
        )
        return CreatedVersion(created, body["version"])

    @blp.arguments(VersionQuerySchema, location="query")
    @blp.response(200, VersionListSchema)
    def get(self, args: dict[str, Any], model: str) -> Any:
        """Versions in PEP 440 order, filtered by tolerance and stage"""
        return registry.list_versions(
            uow(write=False),
            model,
            spec=args.get("spec"),
            stage=args.get("stage"),
            prereleases=args["prereleases"],
            page_token=args.get("page_token"),
            page_size=page_size(args),
        )


@blp.route("/models/<model>/versions/<version>")
class Version(MethodView):
    @blp.response(200, VersionSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, model: str, version: str) -> Any:
        """One version"""
        return registry.get_version(uow(write=False), model, version)


@blp.route("/models/<model>/versions/<version>/transitions")
class Transitions(MethodView):
    @blp.arguments(TransitionSchema)
    @blp.response(200, TransitionResultSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    @blp.alt_response(422, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any], model: str, version: str) -> Any:
        """Move a version to another stage"""
        mv, outcomes = registry.transition(
            uow(write=True),
            model,
            version,
            stage=body["stage"],
            reason=body["reason"],
            force=body["force"],
            caller=caller(),
            from_stage=body["from_stage"],
        )
        return TransitionResult(mv, outcomes)


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
