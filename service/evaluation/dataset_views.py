"""External test sets: registered by digest, or uploaded with their content."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.db.models import MAX_ID, DatasetRevision
from modelreg.errors import ValidationFailed
from modelreg.evaluation import content as dataset_content
from modelreg.evaluation import datasets, uploads
from modelreg.storage.artifacts import SHA256_RE, IncomingFile
from modelreg.web.auth import caller
from modelreg.web.common import (
    RANGE_NOT_SATISFIABLE,
    STRING,
    Name,
    PageArgs,
    UtcDateTime,
    ctx,
    download_doc,
    list_schema,
    multipart_json,
    page_size,
    uow,
)
from modelreg.web.downloads import blob_response
from modelreg.web.error_responses import ApiErrorSchema

blp = Blueprint("datasets", __name__, url_prefix="/api/v1", description="External test sets")

# The endpoint whose file parts are dataset content (``modelreg.app`` sizes uploads by it).
UPLOAD_ENDPOINT = "datasets.Datasets"


def _no_nul(value: str) -> None:
    # PostgreSQL cannot store NUL in text columns.
    if "\x00" in value:
        raise ma.ValidationError("NUL characters are not allowed")


class DatasetCreateSchema(ma.Schema):
    name = Name(required=True)
    sha256 = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(
            f"(?i){SHA256_RE.pattern}", error="must be 64 hexadecimal characters"
        ),
    )
    description = ma.fields.String(load_default="", validate=_no_nul)


class DatasetUploadSchema(ma.Schema):
    """The ``metadata`` part of a content upload."""

    name = Name(required=True)
    target = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=255), _no_nul],
        metadata={"description": "the label column; every other column is a feature"},
    )
    task = ma.fields.String(required=True, validate=ma.validate.OneOf(dataset_content.TASKS))
    description = ma.fields.String(load_default="", validate=_no_nul)


def _content_url(r: DatasetRevision) -> str | None:
    if not r.has_content:
        return None
    return f"/api/v1/datasets/{r.dataset.name}/revisions/{r.revision}/content"


class RevisionSchema(ma.Schema):
    dataset = ma.fields.Function(lambda r: r.dataset.name, metadata=STRING)
    revision = ma.fields.Integer()
    label = ma.fields.String()
    sha256 = ma.fields.String()
    description = ma.fields.String()
    created_at = UtcDateTime()
    has_content = ma.fields.Boolean(
        metadata={"description": "false: registered by sha256 only (reported metrics)"}
    )
    target = ma.fields.String(allow_none=True)
    task = ma.fields.String(allow_none=True)
    format = ma.fields.String(
        attribute="content_format", allow_none=True, metadata={"description": "csv or csv.gz"}
    )
    size = ma.fields.Integer(allow_none=True, metadata={"description": "bytes as uploaded"})
    row_count = ma.fields.Integer(allow_none=True)
    columns = ma.fields.List(ma.fields.String(), allow_none=True)
    content_url = ma.fields.Function(_content_url, allow_none=True, metadata=STRING)


class DatasetSchema(ma.Schema):
    name = ma.fields.String()
    created_at = UtcDateTime()
    revisions = ma.fields.List(ma.fields.Nested(RevisionSchema))

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if attr == "revisions":
            return sorted(obj.revisions, key=lambda r: r.revision)
        return super().get_attribute(obj, attr, default)


DatasetListSchema = list_schema(DatasetSchema, "DatasetList")

_CREATE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DatasetCreateSchema},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "metadata"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with a header row, UTF-8, or gzip'd CSV",
                        },
                        "metadata": DatasetUploadSchema,
                    },
                },
                "encoding": {"metadata": {"contentType": "application/json"}},
            },
        },
    }
}


def _upload_metadata() -> uploads.ContentInput:
    loaded = multipart_json(
        DatasetUploadSchema(),
        "dataset",
        missing="a part named 'metadata' holding {name, target, task} is required",
    )
    return uploads.ContentInput(**loaded)


@blp.route("/datasets")
class Datasets(MethodView):
    @blp.doc(**_CREATE_DOC)
    @blp.response(201, RevisionSchema)
    @blp.alt_response(
        200, schema=RevisionSchema, description="identical content: existing revision"
    )
    @blp.alt_response(400, schema=ApiErrorSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    @blp.alt_response(413, schema=ApiErrorSchema)
    @blp.alt_response(422, schema=ApiErrorSchema)
    def post(self) -> Any:
        """Register a dataset revision: JSON `{name, sha256}`, or multipart `file` + `metadata`

        JSON registers a revision by its digest alone (for reported metrics). Multipart
        uploads the content, a CSV file (plain or gzip'd) with a header row, with
        `metadata` `{name, target, task, description?}`; the service validates it and
        can then evaluate runs on it. Identical bytes again answer 200 with their revision.
        """
        if request.mimetype == "multipart/form-data":
            return self._upload()
        body = blp.ARGUMENTS_PARSER.parse(DatasetCreateSchema(), location="json")
        rev, created = datasets.register_revision(
            uow(write=True), body["name"], body["sha256"], body["description"], caller=caller()
        )
        return rev, 201 if created else 200

    def _upload(self) -> Any:
        meta = _upload_metadata()
        part = request.files.get("file")
        if part is None or not isinstance(part.stream, IncomingFile):
            raise ValidationFailed.field("file", "a file part named 'file' is required")
        c = ctx()
        number, created = uploads.upload_revision(
            c.db,
            c.store,
            part.stream,
            meta,
            max_rows=c.settings.max_dataset_rows,
            max_columns=c.settings.max_dataset_columns,
            max_bytes=c.settings.max_dataset_bytes,
            caller=caller(),
            job_attempts=c.settings.job_max_attempts,
        )
        return datasets.get_revision(uow(write=False), meta.name, number), 201 if created else 200

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


_REVISION = f"/datasets/<name>/revisions/<int(min=1, max={MAX_ID}):rev>"


@blp.route(_REVISION)
class RevisionView(MethodView):
    @blp.response(200, RevisionSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, name: str, rev: int) -> Any:
        """One revision of a dataset"""
        return datasets.get_revision(uow(write=False), name, rev)


@blp.route(f"{_REVISION}/content")
class RevisionContentView(MethodView):
    @blp.doc(**download_doc(["text/csv", "application/gzip"], "the content as uploaded"))
    @blp.response(200, description="The content as uploaded (ETag = sha256)")
    @blp.alt_response(304, description="Not modified")
    @blp.alt_response(404, schema=ApiErrorSchema)
    @blp.alt_response(416, schema=ApiErrorSchema, description=RANGE_NOT_SATISFIABLE)
    @blp.alt_response(503, schema=ApiErrorSchema)
    def get(self, name: str, rev: int) -> Response:
        """Download a revision's content (404 when it was registered by digest only)"""
        revision = datasets.get_content(uow(write=False), name, rev)
        fmt = revision.content_format or "csv"
        return blob_response(
            revision.sha256,
            int(revision.size or 0),
            dataset_content.media_type(fmt),
            f"{revision.label}{dataset_content.file_extension(fmt)}",
        )


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
