"""Environments, policies, plans, champions, explanations, history and pins."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint

from policies.stages import STAGES
from service import champion_reads, environments, pins
from service.api.auth import caller
from service.api.common import (
    ETAG,
    IF_NONE_MATCH,
    STRING,
    Name,
    PageArgs,
    UtcDateTime,
    check_name_length,
    ctx,
    header_parameter,
    list_schema,
    page_size,
    uow,
)
from service.api.errors import ApiErrorSchema
from service.clock import iso
from service.db.models import MAX_ID
from service.errors import BadRequest

blp = Blueprint(
    "environments",
    __name__,
    url_prefix="/api/v1",
    description="Environments, policies and champions",
)


class MetricValueSchema(ma.Schema):
    name = ma.fields.String()
    value = ma.fields.Float(allow_none=True)
    dataset = ma.fields.String()


class ArtifactLinkSchema(ma.Schema):
    url = ma.fields.String()
    sha256 = ma.fields.String(allow_none=True)
    size = ma.fields.Integer(allow_none=True)


class ChampionSchema(ma.Schema):
    environment = ma.fields.String()
    model = ma.fields.String()
    version = ma.fields.String()
    stage = ma.fields.String()
    run_id = ma.fields.Integer()
    run_number = ma.fields.Integer()
    metric = ma.fields.Nested(MetricValueSchema)
    artifact = ma.fields.Nested(ArtifactLinkSchema)
    selected_at = ma.fields.String()
    reason = ma.fields.String()
    policy_revision = ma.fields.Integer()


class EnvironmentBodySchema(ma.Schema):
    description = ma.fields.String(load_default=None)


class EnvironmentSchema(ma.Schema):
    name = ma.fields.String()
    description = ma.fields.String()
    created_at = ma.fields.String()
    updated_at = ma.fields.String()
    champions = ma.fields.List(ma.fields.Nested(ChampionSchema))


class PolicyBodySchema(ma.Schema):
    versions = ma.fields.String(
        load_default="", metadata={"description": 'PEP 440 specifier set; "" takes any version'}
    )
    stages = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(STAGES)),
        required=True,
        validate=ma.validate.Length(min=1),
    )
    metric = Name(required=True)
    dataset = ma.fields.String(
        required=True, metadata={"description": "name@revision, or name for its latest revision"}
    )
    direction = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.OneOf(["max", "min"])
    )
    min_value = ma.fields.Float(load_default=None, allow_none=True, allow_nan=False)
    min_improvement = ma.fields.Float(
        load_default=0.0, allow_nan=False, validate=ma.validate.Range(min=0)
    )
    allow_prereleases = ma.fields.Boolean(load_default=False)
    require_verified = ma.fields.Boolean(load_default=False)
    reason = ma.fields.String(
        load_default="", metadata={"description": "why: required for a change (not for a plan)"}
    )
    force = ma.fields.Boolean(load_default=False)


class PolicySchema(ma.Schema):
    environment = ma.fields.Function(lambda p: p.environment.name, metadata=STRING)
    model = ma.fields.Function(lambda p: p.model.name, metadata=STRING)
    versions = ma.fields.String()
    stages = ma.fields.List(ma.fields.String())
    metric = ma.fields.String()
    dataset = ma.fields.Function(
        lambda p: p.dataset_revision.label, metadata={**STRING, "description": "name@revision"}
    )
    direction = ma.fields.String()
    min_value = ma.fields.Float(allow_none=True)
    min_improvement = ma.fields.Float()
    allow_prereleases = ma.fields.Boolean()
    require_verified = ma.fields.Boolean()
    revision = ma.fields.Integer()
    reason = ma.fields.String()
    updated_by = ma.fields.String()
    updated_at = UtcDateTime()


class PolicyResultSchema(PolicySchema):
    """The stored policy, and what the change did to the environment's champion."""

    champion = ma.fields.Nested(ChampionSchema, allow_none=True, attribute="after")
    champion_changed = ma.fields.Boolean()
    evaluations_scheduled = ma.fields.Integer(
        metadata={"description": "server-side evaluations this change queued"}
    )


class PlanSchema(ma.Schema):
    current = ma.fields.Nested(ChampionSchema, allow_none=True)
    proposed = ma.fields.Nested(ChampionSchema, allow_none=True)
    changes = ma.fields.Boolean()
    eligible_count = ma.fields.Integer()
    would_leave_no_model = ma.fields.Boolean()
    evaluations_scheduled = ma.fields.Integer(
        metadata={"description": "server-side evaluations the change would queue"}
    )


class CandidateSchema(ma.Schema):
    run_id = ma.fields.Integer()
    version = ma.fields.String()
    run_number = ma.fields.Integer()
    stage = ma.fields.String()
    value = ma.fields.Float(allow_none=True)
    eligible = ma.fields.Boolean()
    rank = ma.fields.Integer(allow_none=True)
    reasons = ma.fields.List(ma.fields.String(), metadata={"description": "why it is excluded"})
    warnings = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "never exclude; reported_mismatch: reported != verified"},
    )
    reported = ma.fields.Float(allow_none=True)
    verified = ma.fields.Float(allow_none=True)


class ExplainSchema(ma.Schema):
    environment = ma.fields.String()
    model = ma.fields.String()
    champion = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String()
    policy_revision = ma.fields.Integer()
    metric = ma.fields.String()
    dataset = ma.fields.String()
    direction = ma.fields.String()
    pinned_run_id = ma.fields.Integer(allow_none=True)
    candidates = ma.fields.List(ma.fields.Nested(CandidateSchema))


class HistoryItemSchema(ma.Schema):
    from_run_id = ma.fields.Integer(allow_none=True)
    to_run_id = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String()
    trigger = ma.fields.String()
    detail = ma.fields.String()
    actor = ma.fields.String()
    policy_revision = ma.fields.Integer()
    at = UtcDateTime()


class PinBodySchema(ma.Schema):
    run_id = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(min=1, max=MAX_ID)
    )
    reason = ma.fields.String(load_default="", metadata={"description": "required; audited"})


class UnpinBodySchema(ma.Schema):
    reason = ma.fields.String(load_default="", metadata={"description": "required; audited"})


class PinSchema(ma.Schema):
    environment = ma.fields.String()
    model = ma.fields.String()
    run_id = ma.fields.Integer()
    reason = ma.fields.String()
    actor = ma.fields.String()
    champion = ma.fields.Nested(ChampionSchema, allow_none=True)


EnvironmentListSchema = list_schema(EnvironmentSchema, "EnvironmentList")
HistorySchema = list_schema(HistoryItemSchema, "History")


IF_MATCH = header_parameter(
    "If-Match", "the revision you read (its ETag); required when replacing a policy"
)
WOULD_LEAVE_NO_MODEL = (
    "`would_leave_no_model`: the change would leave the environment with nothing to "
    "serve (send force: true)"
)


def _environment_doc(env: Any, champs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": env.name,
        "description": env.description,
        "created_at": iso(env.created_at),
        "updated_at": iso(env.updated_at),
        "champions": champs,
    }


def _policy_input(body: dict[str, Any]) -> environments.PolicyInput:
    return environments.PolicyInput(**{**body, "stages": tuple(body["stages"])})


def _if_match() -> int | None:
    """The policy revision a client last saw, from ``If-Match: 3`` or ``If-Match: "3"``."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise BadRequest("If-Match must be a policy revision number", {"If-Match": raw})
    return int(value)


def _pin_doc(s: Any, env: str, model: str, run_id: int | None, reason: str) -> dict[str, Any]:
    row = environments.get_policy(s, env, model)
    return {
        "environment": row.environment.name,
        "model": row.model.name,
        "run_id": run_id,
        "reason": reason,
        "actor": caller().name,
        "champion": champion_reads.stored_champion(s, row.environment_id, row.model_id),
    }


@blp.route("/environments")
class Environments(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, EnvironmentListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Environments, with the champion of every model"""
        page = environments.list_environments(
            uow(write=False), args.get("page_token"), page_size(args)
        )
        return {
            "items": [_environment_doc(e, c) for e, c in page.items],
            "next_page_token": page.next_page_token,
        }


@blp.route("/environments/<env>")
class EnvironmentView(MethodView):
    @blp.arguments(EnvironmentBodySchema)
    @blp.response(200, EnvironmentSchema)
    @blp.alt_response(201, schema=EnvironmentSchema)
    def put(self, body: dict[str, Any], env: str) -> Any:
        """Create or update an environment"""
        check_name_length("name", env)
        s = uow(write=True)
        row, created = environments.put_environment(s, env, body["description"], caller=caller())
        return _environment_doc(row, environments.champions_in(s, row)), 201 if created else 200

    @blp.response(200, EnvironmentSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, env: str) -> Any:
        """One environment, with the champion of every model"""
        s = uow(write=False)
        row = environments.get_environment(s, env)
        return _environment_doc(row, environments.champions_in(s, row))


@blp.route("/environments/<env>/policies/<model>")
class PolicyView(MethodView):
    @blp.arguments(PolicyBodySchema)
    @blp.doc(parameters=[IF_MATCH])
    @blp.response(200, PolicyResultSchema, headers={"ETag": ETAG}, description="replaced")
    @blp.alt_response(201, schema=PolicyResultSchema, headers={"ETag": ETAG}, description="created")
    @blp.alt_response(409, schema=ApiErrorSchema, description=WOULD_LEAVE_NO_MODEL)
    @blp.alt_response(
        412, schema=ApiErrorSchema, description="`precondition_failed`: If-Match is stale"
    )
    @blp.alt_response(422, schema=ApiErrorSchema)
    @blp.alt_response(
        428,
        schema=ApiErrorSchema,
        description="`precondition_required`: replacing a policy needs If-Match",
    )
    def put(self, body: dict[str, Any], env: str, model: str) -> Any:
        """Create or replace a policy (If-Match: <revision> required when replacing)"""
        change = environments.put_policy(
            uow(write=True),
            env,
            model,
            _policy_input(body),
            if_match=_if_match(),
            caller=caller(),
            job_attempts=ctx().settings.job_max_attempts,
        )
        return change, 201 if change.created else 200, {"ETag": f'"{change.policy.revision}"'}

    @blp.response(200, PolicySchema, headers={"ETag": ETAG})
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, env: str, model: str) -> Any:
        """The policy, with its revision (also the ETag)"""
        row = environments.get_policy(uow(write=False), env, model)
        return row, 200, {"ETag": f'"{row.revision}"'}


@blp.route("/environments/<env>/policies/<model>/plan")
class PlanView(MethodView):
    @blp.arguments(PolicyBodySchema)
    @blp.response(200, PlanSchema)
    def post(self, body: dict[str, Any], env: str, model: str) -> Any:
        """Dry run of a policy: current vs proposed champion; nothing is stored"""
        return environments.plan(uow(write=True), env, model, _policy_input(body), caller=caller())


@blp.route("/environments/<env>/models/<model>")
class ChampionView(MethodView):
    @blp.doc(parameters=[IF_NONE_MATCH])
    @blp.response(200, ChampionSchema, headers={"ETag": ETAG})
    @blp.alt_response(
        304, description="Not modified (If-None-Match matched)", headers={"ETag": ETAG}
    )
    @blp.alt_response(
        404,
        schema=ApiErrorSchema,
        description="`not_found`, or `no_eligible_model`: the policy selects no run",
    )
    def get(self, env: str, model: str) -> Response:
        """The champion: which run this environment serves"""
        doc, etag = champion_reads.read_champion(ctx().db, env, model)
        response = jsonify(doc)
        response.set_etag(etag)
        return response.make_conditional(request)  # type: ignore[return-value]


@blp.route("/environments/<env>/models/<model>/explain")
class ExplainView(MethodView):
    @blp.response(200, ExplainSchema)
    def get(self, env: str, model: str) -> Any:
        """Every candidate run, eligible or excluded with reasons, ranked"""
        s = uow(write=False)
        row = environments.get_policy(s, env, model)
        return champion_reads.explain(s, row)


@blp.route("/environments/<env>/models/<model>/history")
class HistoryView(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, HistorySchema)
    def get(self, args: dict[str, Any], env: str, model: str) -> Any:
        """Champion changes, newest first"""
        s = uow(write=False)
        row = environments.get_policy(s, env, model)
        return champion_reads.history(
            s, row.environment_id, row.model_id, args.get("page_token"), page_size(args)
        )


@blp.route("/environments/<env>/models/<model>/pin")
class PinView(MethodView):
    @blp.arguments(PinBodySchema)
    @blp.response(200, PinSchema)
    def put(self, body: dict[str, Any], env: str, model: str) -> Any:
        """Serve this run regardless of ranking (rollback)"""
        s = uow(write=True)
        pin, _ = pins.pin(s, env, model, body["run_id"], body["reason"], caller=caller())
        return _pin_doc(s, env, model, pin.run_id, pin.reason)

    @blp.arguments(UnpinBodySchema)
    @blp.response(200, PinSchema)
    def delete(self, body: dict[str, Any], env: str, model: str) -> Any:
        """Remove the pin; ranking decides again"""
        s = uow(write=True)
        pins.unpin(s, env, model, body["reason"], caller=caller())
        return _pin_doc(s, env, model, None, body["reason"])
