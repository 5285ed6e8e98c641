"""Environments, policies, plans, champions, explanations, history and pins."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint

from modelreg.clock import iso
from modelreg.db.pagination import offset_page
from modelreg.environments import pins
from modelreg.environments import reads as champion_reads
from modelreg.environments import services as environments
from modelreg.environments.schemas import (
    ChampionListSchema,
    ChampionSchema,
    EnvironmentBodySchema,
    EnvironmentListSchema,
    EnvironmentSchema,
    ExplainSchema,
    HistorySchema,
    PinBodySchema,
    PinSchema,
    PlanSchema,
    PolicyBodySchema,
    PolicyResultSchema,
    PolicySchema,
    UnpinBodySchema,
)
from modelreg.errors import BadRequest
from modelreg.registry.services import get_model
from modelreg.web.auth import caller
from modelreg.web.common import (
    ETAG,
    IF_NONE_MATCH,
    PageArgs,
    check_name_length,
    ctx,
    header_parameter,
    page_size,
    uow,
)
from modelreg.web.error_responses import ApiErrorSchema

blp = Blueprint(
    "environments",
    __name__,
    url_prefix="/api/v1",
    description="Environments, policies and champions",
)


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
    formats = body.get("formats")
    return environments.PolicyInput(
        **{
            **body,
            "stages": tuple(body["stages"]),
            "formats": None if formats is None else tuple(formats),
        }
    )


def _if_match() -> int | None:
    """The policy revision a client last saw, from ``If-Match: 3`` or ``If-Match: "3"``."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise BadRequest("If-Match must be a policy revision number", {"If-Match": raw})
    return int(value)


def _pin_doc(
    s: Any, env: str, model: str, pin: Any | None, *, reason: str = "", actor: str = ""
) -> dict[str, Any]:
    """A pin (``None``: just removed, with the removal's ``reason`` and ``actor``)."""
    row = environments.get_policy(s, env, model)
    return {
        "environment": row.environment.name,
        "model": row.model.name,
        "run_id": pin.run_id if pin else None,
        "reason": pin.reason if pin else reason,
        "actor": pin.actor if pin else actor,
        "pinned_at": pin.created_at if pin else None,
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
            server_formats=ctx().settings.allowed_format_list,
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
        return environments.plan(
            uow(write=True),
            env,
            model,
            _policy_input(body),
            caller=caller(),
            server_formats=ctx().settings.allowed_format_list,
        )


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
    @blp.response(200, PinSchema)
    @blp.alt_response(
        404,
        schema=ApiErrorSchema,
        description="`not_found`: no such environment, model or policy, or no pin",
    )
    def get(self, env: str, model: str) -> Any:
        """The pin: which run is served regardless of ranking, why, by whom, since when"""
        s = uow(write=False)
        return _pin_doc(s, env, model, pins.get_pin(s, env, model))

    @blp.arguments(PinBodySchema)
    @blp.response(200, PinSchema)
    def put(self, body: dict[str, Any], env: str, model: str) -> Any:
        """Serve this run regardless of ranking (rollback)"""
        s = uow(write=True)
        pin, _ = pins.pin(s, env, model, body["run_id"], body["reason"], caller=caller())
        return _pin_doc(s, env, model, pin)

    @blp.arguments(UnpinBodySchema)
    @blp.response(200, PinSchema)
    def delete(self, body: dict[str, Any], env: str, model: str) -> Any:
        """Remove the pin; ranking decides again"""
        s = uow(write=True)
        pins.unpin(s, env, model, body["reason"], caller=caller())
        return _pin_doc(s, env, model, None, reason=body["reason"], actor=caller().name)


@blp.route("/models/<model>/champions")
class ModelChampions(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ChampionListSchema)
    def get(self, args: dict[str, Any], model: str) -> Any:
        """The champion of this model in every environment"""
        s = uow(write=False)
        found = champion_reads.champions_of_model(s, get_model(s, model))
        return offset_page(found, args.get("page_token"), page_size(args))


def init_app(api: Api) -> None:
    """Register these routes with the application's API (``create_app`` calls it)."""
    api.register_blueprint(blp)
