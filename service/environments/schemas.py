"""Schemas of environments, policies, champions, explanations, history and pins."""

from __future__ import annotations

import marshmallow as ma

from modelreg.db.models import MAX_ID
from modelreg.policies.stages import STAGES
from modelreg.web.common import (
    STRING,
    Name,
    UtcDateTime,
    list_schema,
)


class MetricValueSchema(ma.Schema):
    name = ma.fields.String()
    value = ma.fields.Float(allow_none=True)
    dataset = ma.fields.String()


class ArtifactLinkSchema(ma.Schema):
    url = ma.fields.String()
    sha256 = ma.fields.String(allow_none=True)
    size = ma.fields.Integer(allow_none=True)
    format = ma.fields.String(
        allow_none=True, metadata={"description": "joblib, pickle, skops, onnx, …"}
    )


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
    pending_evaluations = ma.fields.Integer(
        metadata={
            "description": "evaluations still to come on the policy's revision for runs the "
            "policy admits"
        }
    )
    held = ma.fields.Boolean(
        metadata={
            "description": "a change of champion waits for those evaluations (at most "
            "settle_seconds); the champion stays as it was chosen meanwhile"
        }
    )
    held_since = ma.fields.String(allow_none=True)
    allowed_formats = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "the artifact formats the policy allows ([]: any): a serving "
            "layer refuses to load any other"
        },
    )


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
    require_verified = ma.fields.Boolean(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "only values the service computed count; default: true when the "
            "dataset revision has content, false for one registered by digest only"
        },
    )
    formats = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=32)),
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(max=20),
        metadata={
            "description": 'artifact formats a run may have, e.g. ["skops", "onnx"]; '
            "absent or []: the server's allowed_formats (empty there: any)"
        },
    )
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
    formats = ma.fields.Function(
        lambda p: list(p.formats or ()),
        metadata={"type": "array", "items": {"type": "string"}, "description": "[]: any"},
    )
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
    pending_evaluations = ma.fields.Integer(
        metadata={"description": "runs the policy admits that would still be scored"}
    )
    held = ma.fields.Boolean(
        metadata={
            "description": "the champion would hold until they are scored (or the settle "
            "limit passes), then move once"
        }
    )


class EvaluationStateSchema(ma.Schema):
    job_id = ma.fields.Integer()
    state = ma.fields.String(metadata={"description": "pending, running, succeeded or failed"})
    error = ma.fields.String(allow_none=True, metadata={"description": "first line, if failed"})


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
    format = ma.fields.String(allow_none=True, metadata={"description": "the artifact's format"})
    evaluation = ma.fields.Nested(
        EvaluationStateSchema,
        allow_none=True,
        metadata={"description": "the latest evaluation job on the policy's revision; null: none"},
    )


class DecisionSchema(ma.Schema):
    champion = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String()


class ExplainSchema(ma.Schema):
    environment = ma.fields.String()
    model = ma.fields.String()
    champion = ma.fields.Integer(allow_none=True, metadata={"description": "the run served"})
    reason = ma.fields.String()
    decision = ma.fields.Nested(
        DecisionSchema,
        metadata={"description": "what the policy chooses over what is scored now"},
    )
    pending_evaluations = ma.fields.Integer()
    held = ma.fields.Boolean()
    held_since = ma.fields.String(allow_none=True)
    policy_revision = ma.fields.Integer()
    metric = ma.fields.String()
    dataset = ma.fields.String()
    direction = ma.fields.String()
    require_verified = ma.fields.Boolean()
    formats = ma.fields.List(ma.fields.String(), metadata={"description": "[]: any"})
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
    run_id = ma.fields.Integer(
        allow_none=True, metadata={"description": "the pinned run; null once unpinned"}
    )
    reason = ma.fields.String()
    actor = ma.fields.String(metadata={"description": "who pinned (or unpinned)"})
    pinned_at = UtcDateTime(
        allow_none=True, metadata={"description": "when the run was pinned; null once unpinned"}
    )
    champion = ma.fields.Nested(ChampionSchema, allow_none=True)


EnvironmentListSchema = list_schema(EnvironmentSchema, "EnvironmentList")
HistorySchema = list_schema(HistoryItemSchema, "History")


ChampionListSchema = list_schema(ChampionSchema, "ChampionList")
