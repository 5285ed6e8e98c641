"""Background jobs (server-side evaluations): request one, follow it, list them."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.access import quotas
from modelreg.db.models import MAX_ID
from modelreg.evaluation import queue as jobs
from modelreg.evaluation import redaction
from modelreg.roles import allows
from modelreg.web.auth import caller
from modelreg.web.common import STRING, PageArgs, UtcDateTime, ctx, list_schema, page_size, uow
from modelreg.web.error_responses import ApiErrorSchema

blp = Blueprint("jobs", __name__, url_prefix="/api/v1", description="Server-side evaluation jobs")


def _admin() -> bool:
    """Whether this request's caller sees job records whole (child output included)."""
    return allows(caller().role, "admin")


class JobSchema(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    run_id = ma.fields.Integer()
    dataset = ma.fields.Function(lambda j: j.dataset_revision.label, metadata=STRING)
    state = ma.fields.String(metadata={"description": ", ".join(jobs.STATES)})
    trigger = ma.fields.String(metadata={"description": "run_registered, policy or request"})
    actor = ma.fields.String()
    attempts = ma.fields.Integer()
    max_attempts = ma.fields.Integer()
    worker = ma.fields.String(allow_none=True)
    isolation = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "the isolation level the evaluation ran at: strict (bubblewrap "
            "sandbox) or process (forked child with limits only); null until it ran"
        },
    )
    error = ma.fields.Function(
        lambda j: redaction.job_error(j.error, admin=_admin()),
        allow_none=True,
        metadata={**STRING, "description": "why it failed (redacted and bounded below admin)"},
    )
    result = ma.fields.Function(
        lambda j: redaction.job_result(j.result, admin=_admin()),
        allow_none=True,
        metadata={
            "type": "object",
            "description": "metrics, skipped (metric -> reason), seconds, exit_code, …; the"
            " evaluated model's output (output_tail, traceback) for admin only",
        },
    )
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    lease_expires_at = UtcDateTime(
        allow_none=True,
        metadata={"description": "while running: the worker's claim, renewed while it works"},
    )
    finished_at = UtcDateTime(allow_none=True)
    url = ma.fields.Function(lambda j: f"/api/v1/jobs/{j.id}", metadata=STRING)


JobListSchema = list_schema(JobSchema, "JobList")


class JobListArgs(PageArgs):
    state = ma.fields.String(validate=ma.validate.OneOf(jobs.STATES))
    run_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_ID))


class EvaluateSchema(ma.Schema):
    dataset = ma.fields.String(
        required=True,
        metadata={"description": "name@revision, or name for its latest revision (with content)"},
    )


class ModelEvaluateSchema(ma.Schema):
    dataset = ma.fields.String(
        required=True,
        metadata={"description": "name@revision, or name for its latest revision (with content)"},
    )
    versions = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(max=512),
        metadata={"description": 'PEP 440 specifier set of the versions to score; "": all'},
    )


class ModelEvaluationSchema(ma.Schema):
    model = ma.fields.String()
    dataset = ma.fields.String(metadata={"description": "name@revision"})
    versions = ma.fields.String(metadata={"description": 'the specifier applied; "": all'})
    jobs = ma.fields.Integer(metadata={"description": "jobs queued by this request"})
    already_scored = ma.fields.Integer(
        metadata={"description": "runs verified on the revision or with a job pending or running"}
    )
    job_ids = ma.fields.List(ma.fields.Integer(), metadata={"description": "the jobs queued"})
    pending_job_ids = ma.fields.List(
        ma.fields.Integer(),
        metadata={"description": "jobs already pending or running for these runs there"},
    )


@blp.route("/models/<model>/evaluate")
class ModelEvaluateView(MethodView):
    @blp.arguments(ModelEvaluateSchema)
    @blp.response(202, ModelEvaluationSchema)
    @blp.alt_response(404, schema=ApiErrorSchema, description="unknown model or dataset")
    @blp.alt_response(
        422, schema=ApiErrorSchema, description="a revision registered by digest only"
    )
    def post(self, body: dict[str, Any], model: str) -> Any:
        """Score every run of a model (of some versions) on a dataset revision, server-side"""
        return jobs.evaluate_model(
            uow(write=True),
            model,
            body["dataset"],
            body["versions"],
            caller=caller(),
            max_attempts=ctx().settings.job_max_attempts,
        )


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.arguments(JobListArgs, location="query")
    @blp.response(200, JobListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Jobs, newest first; filter by state and run"""
        return jobs.list_jobs(
            uow(write=False),
            state=args.get("state"),
            run_id=args.get("run_id"),
            page_token=args.get("page_token"),
            page_size=page_size(args),
        )


@blp.route(f"/jobs/<int(min=1, max={MAX_ID}):job_id>")
class JobView(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, job_id: int) -> Any:
        """One job: state, attempts, result or error"""
        return jobs.get_job(uow(write=False), job_id)


@blp.route(f"/runs/<int(min=1, max={MAX_ID}):run_id>/evaluate")
class EvaluateView(MethodView):
    @blp.arguments(EvaluateSchema)
    @blp.response(202, JobSchema)
    @blp.alt_response(200, schema=JobSchema, description="already evaluated: the job that did it")
    @blp.alt_response(404, schema=ApiErrorSchema)
    @blp.alt_response(422, schema=ApiErrorSchema)
    @blp.alt_response(429, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any], run_id: int) -> Any:
        """Evaluate a run on a dataset revision, server-side (a job)"""
        session = uow(write=True)
        quotas.lock_token(session, caller().name)
        quotas.check_pending_jobs(session, caller().name, ctx().settings.max_pending_jobs_per_token)
        job, _ = jobs.evaluate_on_request(
            session,
            run_id,
            body["dataset"],
            caller=caller(),
            max_attempts=ctx().settings.job_max_attempts,
        )
        status = 200 if job.state == jobs.SUCCEEDED else 202
        return job, status, {"Location": f"/api/v1/jobs/{job.id}"}


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
