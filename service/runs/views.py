"""Runs with their artifacts, and reported evaluations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.db.models import MAX_ID, Evaluation, Job, Run
from modelreg.db.pagination import offset_page
from modelreg.errors import ValidationFailed
from modelreg.evaluation import queue as jobs
from modelreg.evaluation import services as evaluations
from modelreg.evaluation.job_views import JobSchema
from modelreg.runs import services as runs
from modelreg.storage.artifacts import SHA256_RE, IncomingFile
from modelreg.web.auth import caller
from modelreg.web.common import (
    RANGE_NOT_SATISFIABLE,
    STRING,
    Name,
    OutcomeSchema,
    PageArgs,
    UtcDateTime,
    ctx,
    download_doc,
    json_dict,
    list_schema,
    multipart_json,
    page_size,
    response_header,
    uow,
)
from modelreg.web.downloads import blob_response
from modelreg.web.error_responses import ApiErrorSchema, error_response


class VersionDeleteSchema(ma.Schema):
    reason = ma.fields.String(load_default="", metadata={"description": "audited"})
    force = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "also remove the version's runs; the champions they hold move "
            "to their successors, even if an environment is left with none"
        },
    )


class VersionDeletedSchema(ma.Schema):
    model = ma.fields.String()
    version = ma.fields.String()
    deleted = ma.fields.Boolean()
    runs = ma.fields.List(ma.fields.Integer(), metadata={"description": "the runs removed"})
    champions = ma.fields.List(ma.fields.Nested(OutcomeSchema))


blp = Blueprint("runs", __name__, url_prefix="/api/v1", description="Runs and evaluations")


class EvaluationInputSchema(ma.Schema):
    dataset = ma.fields.String(
        required=True, metadata={"description": "name@revision, or name for its latest revision"}
    )
    metrics = ma.fields.Dict(
        keys=Name(),
        values=ma.fields.Float(allow_nan=False),
        required=True,
        validate=ma.validate.Length(min=1),
        metadata={"description": "at most max_metrics_per_evaluation (default 100) metrics"},
    )

    @ma.validates("metrics")
    def _few_enough_metrics(self, value: dict[str, float], **_: Any) -> None:
        limit = ctx().settings.max_metrics_per_evaluation
        if len(value) > limit:
            raise ma.ValidationError(f"at most {limit} metrics (max_metrics_per_evaluation)")


class RunMetadataSchema(ma.Schema):
    params = json_dict(load_default=dict)
    tags = json_dict(load_default=dict)
    source = json_dict(
        load_default=dict,
        metadata={"description": "provenance (git commit, pipeline id); never a storage location"},
    )
    expected_sha256 = ma.fields.String(
        load_default=None,
        # Hex digits in either case, as datasets take them (the store compares lower-cased).
        validate=ma.validate.Regexp(f"(?i){SHA256_RE.pattern}", error="64 hex digits"),
    )
    format = ma.fields.String(load_default=None, validate=ma.validate.Length(max=32))
    evaluations = ma.fields.List(
        ma.fields.Nested(EvaluationInputSchema),
        load_default=list,
        metadata={"description": "at most max_evaluations_per_run (default 100) items"},
    )

    @ma.validates("evaluations")
    def _few_enough_evaluations(self, value: list[Any], **_: Any) -> None:
        limit = ctx().settings.max_evaluations_per_run
        if len(value) > limit:
            raise ma.ValidationError(f"at most {limit} evaluations (max_evaluations_per_run)")


class EvaluationSchema(ma.Schema):
    dataset = ma.fields.Function(lambda e: e.dataset_revision.label, metadata=STRING)
    metric = ma.fields.String()
    value = ma.fields.Float()
    source = ma.fields.String()
    created_at = UtcDateTime()


class ArtifactSchema(ma.Schema):
    sha256 = ma.fields.String()
    size = ma.fields.Integer()
    format = ma.fields.String()
    filename = ma.fields.String()


class RunSchema(ma.Schema):
    id = ma.fields.Integer()
    model = ma.fields.Function(lambda r: r.model_version.model.name, metadata=STRING)
    version = ma.fields.Function(lambda r: r.model_version.version, metadata=STRING)
    stage = ma.fields.Function(lambda r: r.model_version.stage, metadata=STRING)
    number = ma.fields.Integer()
    artifact = ma.fields.Nested(ArtifactSchema)
    params = json_dict()
    tags = json_dict()
    source = json_dict()
    created_at = UtcDateTime()

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if attr == "artifact":
            return {
                "sha256": obj.artifact_sha256,
                "size": obj.artifact_size,
                "format": obj.artifact_format,
                "filename": obj.artifact_filename,
            }
        return super().get_attribute(obj, attr, default)


class RunDetailSchema(RunSchema):
    evaluations = ma.fields.List(ma.fields.Nested(EvaluationSchema))
    pending_jobs = ma.fields.List(
        ma.fields.Nested(JobSchema), metadata={"description": "evaluations pending or running"}
    )


@dataclass(frozen=True)
class RunDetail:
    """A run and its evaluations; reads through to the run row."""

    run: Run
    evaluations: list[Evaluation]
    pending_jobs: list[Job]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)


RunListSchema = list_schema(RunSchema, "RunList")
EvaluationListSchema = list_schema(EvaluationSchema, "EvaluationList")

_MULTIPART_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["artifact"],
                    "properties": {
                        "artifact": {"type": "string", "format": "binary"},
                        "metadata": RunMetadataSchema,
                    },
                },
                "encoding": {"metadata": {"contentType": "application/json"}},
            }
        },
    }
}


def _metadata() -> runs.RunInput:
    return runs.RunInput(**multipart_json(RunMetadataSchema(), "run"))


@blp.route("/models/<model>/versions/<version>/runs")
class Runs(MethodView):
    @blp.doc(**_MULTIPART_DOC)
    @blp.response(201, RunDetailSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    @blp.alt_response(413, schema=ApiErrorSchema)
    @blp.alt_response(422, schema=ApiErrorSchema)
    @blp.alt_response(429, schema=ApiErrorSchema)
    def post(self, model: str, version: str) -> Any:
        """Register a run: multipart `artifact` file + `metadata` JSON"""
        if request.mimetype != "multipart/form-data":
            return _unsupported()
        c = ctx()
        limits = runs.UsageLimits(
            c.settings.max_pending_jobs_per_token, c.settings.max_stored_bytes_per_token
        )
        runs.check_usage_before_upload(c.db, caller(), limits)
        meta = _metadata()
        part = request.files.get("artifact")
        if part is None or not isinstance(part.stream, IncomingFile):
            raise ValidationFailed.field("artifact", "a file part named 'artifact' is required")
        run = runs.create_run(
            c.db,
            c.store,
            model,
            version,
            part.stream,
            part.filename,
            meta,
            caller=caller(),
            job_attempts=c.settings.job_max_attempts,
            limits=limits,
        )
        s = uow(write=False)
        return RunDetail(
            runs.get_run(s, run.id), evaluations.of_run(s, run.id), jobs.active_of_run(s, run.id)
        )

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, RunListSchema)
    def get(self, args: dict[str, Any], model: str, version: str) -> Any:
        """Runs of a version, by number"""
        return runs.list_runs(
            uow(write=False), model, version, args.get("page_token"), page_size(args)
        )


def _unsupported() -> Response:
    return error_response(
        415, "unsupported_media_type", "runs are registered as multipart/form-data"
    )


class RunDeleteSchema(ma.Schema):
    reason = ma.fields.String(load_default="")
    force = ma.fields.Boolean(load_default=False)


class RunDeletedSchema(ma.Schema):
    id = ma.fields.Integer()
    deleted = ma.fields.Boolean()
    champions = ma.fields.List(ma.fields.Nested(OutcomeSchema))


@blp.route(f"/runs/<int(min=1, max={MAX_ID}):run_id>")
class RunView(MethodView):
    @blp.arguments(RunDeleteSchema)
    @blp.response(200, RunDeletedSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def delete(self, body: dict[str, Any], run_id: int) -> Any:
        """Remove a run (with its evaluations and pins); champions it held move"""
        c = ctx()
        outcomes = runs.delete_run(
            c.db, c.store, run_id, reason=body["reason"], force=body["force"], caller=caller()
        )
        return {"id": run_id, "deleted": True, "champions": outcomes}

    @blp.response(200, RunDetailSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, run_id: int) -> Any:
        """A run, with its evaluations"""
        s = uow(write=False)
        return RunDetail(
            runs.get_run(s, run_id), evaluations.of_run(s, run_id), jobs.active_of_run(s, run_id)
        )


@blp.route(f"/runs/<int(min=1, max={MAX_ID}):run_id>/artifact")
class ArtifactView(MethodView):
    @blp.doc(
        **download_doc(
            ["application/octet-stream"],
            "the artifact",
            {"X-Artifact-Format": response_header("joblib, pkl, skops, onnx, …")},
        )
    )
    @blp.response(200, description="The artifact bytes (ETag = sha256)")
    @blp.alt_response(304, description="Not modified")
    @blp.alt_response(404, schema=ApiErrorSchema)
    @blp.alt_response(416, schema=ApiErrorSchema, description=RANGE_NOT_SATISFIABLE)
    @blp.alt_response(503, schema=ApiErrorSchema)
    def get(self, run_id: int) -> Response:
        """Download a run's artifact"""
        run = runs.get_run(uow(write=False), run_id)
        name = run.artifact_filename or (
            f"{run.model_version.model.name}-{run.model_version.version}-run{run.number}"
        )
        response = blob_response(
            run.artifact_sha256, run.artifact_size, "application/octet-stream", name
        )
        response.headers["X-Artifact-Format"] = run.artifact_format
        return response


@blp.route(f"/runs/<int(min=1, max={MAX_ID}):run_id>/evaluations")
class Evaluations(MethodView):
    @blp.arguments(EvaluationInputSchema)
    @blp.response(201, EvaluationListSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any], run_id: int) -> Any:
        """Record reported metrics of a run on a dataset revision"""
        rows = evaluations.record(
            uow(write=True), run_id, body["dataset"], body["metrics"], caller=caller()
        )
        return {"items": rows, "next_page_token": None}

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, EvaluationListSchema)
    def get(self, args: dict[str, Any], run_id: int) -> Any:
        """A run's evaluations"""
        s = uow(write=False)
        runs.get_run(s, run_id)
        return offset_page(evaluations.of_run(s, run_id), args.get("page_token"), page_size(args))


# DELETE of the version's own URL: removing a version removes its runs (with force),
# so it is served here, beside run removal, and GET stays with the registry.
@blp.route("/models/<model>/versions/<version>", endpoint="VersionRemoval")
class VersionRemoval(MethodView):
    @blp.arguments(VersionDeleteSchema)
    @blp.response(204, description="Removed; the version had no runs")
    @blp.alt_response(
        200,
        schema=VersionDeletedSchema,
        description="Removed with its runs (force); the champions they held moved",
    )
    @blp.alt_response(404, schema=ApiErrorSchema)
    @blp.alt_response(
        409,
        schema=ApiErrorSchema,
        description="`conflict`: the version has runs (`details.runs`); send force: true",
    )
    def delete(self, body: dict[str, Any], model: str, version: str) -> Any:
        """Remove a version; with force, its runs too (as removing each run with force)"""
        c = ctx()
        removed = runs.delete_version(
            c.db, c.store, model, version, reason=body["reason"], force=body["force"],
            caller=caller(),
        )  # fmt: skip
        if not removed.run_ids:
            return "", 204
        doc = {
            "model": removed.model,
            "version": removed.version,
            "deleted": True,
            "runs": removed.run_ids,
            "champions": removed.champions,
        }
        # Dumped here: flask-smorest dumps with the primary response's schema only (204's).
        return VersionDeletedSchema().dump(doc), 200


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
