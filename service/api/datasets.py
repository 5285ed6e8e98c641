"""External test sets, registered by name and content digest."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from service import datasets
from service.api.common import Name, PageArgs, UtcDateTime, list_schema, page_size, uow
from service.api.errors import ApiErrorSchema
from service.artifacts import SHA256_RE

blp = Blueprint("datasets", __name__, url_prefix="/api/v1", description="External test sets")


class DatasetCreateSchema(ma.Schema):
    name = Name(required=True)
    sha256 = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(f"(?i){SHA256_RE.pattern}", error="64 hexadecimal characters"),
    )
    description = ma.fields.String(load_default="")


class RevisionSchema(ma.Schema):
    dataset = ma.fields.Function(lambda r: r.dataset.name)
    revision = ma.fields.Integer()
    label = ma.fields.String()
    sha256 = ma.fields.String()
    description = ma.fields.String()
    created_at = UtcDateTime()


class DatasetSchema(ma.Schema):
    name = ma.fields.String()
    created_at = UtcDateTime()
    revisions = ma.fields.Function(
        lambda d: RevisionSchema(many=True).dump(sorted(d.revisions, key=lambda r: r.revision))
    )


DatasetListSchema = list_schema(DatasetSchema, "DatasetList")


@blp.route("/datasets")
class Datasets(MethodView):
    @blp.arguments(DatasetCreateSchema)
    @blp.response(201, RevisionSchema)
    @blp.alt_response(
        200, schema=RevisionSchema, description="identical content: existing revision"
    )
    def post(self, body: dict[str, Any]) -> Any:
        """Register a dataset revision by name and sha256"""
        rev, created = datasets.register_revision(
            uow(write=True), body["name"], body["sha256"], body["description"]
        )
        return rev, 201 if created else 200

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, DatasetListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List datasets"""
        return datasets.list_datasets(uow(write=False), args.get("page_token"), page_size(args))


@blp.route("/datasets/<name>")
class DatasetView(MethodView):
    @blp.response(200, DatasetSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, name: str) -> Any:
        """A dataset with its revisions"""
        return datasets.get_dataset(uow(write=False), name)
