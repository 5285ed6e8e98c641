"""``modelreg policy get|set|plan``: version-tolerance policies (``apply``: policy_apply.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from modelreg.cli.common import (
    STAGES,
    Api,
    CliError,
    api_command,
    champion_line,
    pairs,
)
from modelreg.cli.policy_file import (
    DATASET,
    FIELDS,
    PolicyFileError,
    diff,
    normalized,
    shown,
)
from modelreg.client import NotFound, Registry
from modelreg.client.resources import Plan, Policy


def stored(policy: Policy | None) -> dict[str, Any] | None:
    """The comparable fields of a stored policy."""
    if policy is None:
        return None
    return {k: list(policy.stages) if k == "stages" else policy.raw.get(k) for k in FIELDS}


def _policy_text(p: Policy) -> str:
    return pairs(
        [
            ("environment", p.environment),
            ("model", p.model),
            ("versions", p.versions or '""'),
            ("stages", list(p.stages)),
            ("metric", p.metric),
            ("dataset", p.dataset),
            ("direction", p.direction),
            ("min_value", p.min_value),
            ("min_improvement", p.min_improvement),
            ("allow_prereleases", p.allow_prereleases),
            ("require_verified", p.require_verified),
            ("formats", list(p.formats) or "any"),
            ("revision", p.revision),
            ("reason", p.reason),
            ("updated by", p.updated_by),
            ("updated", p.updated_at),
        ]
    )


def diff_lines(changes: dict[str, tuple[Any, Any]], created: bool) -> list[str]:
    if created:
        return [f"  {k}: {shown(new)}" for k, (_, new) in changes.items()]
    return [f"  {k}: {shown(old)} → {shown(new)}" for k, (old, new) in changes.items()]


def plan_lines(plan: Plan) -> list[str]:
    lines = [
        f"  champion: {champion_line(plan.current)} → {champion_line(plan.proposed)}"
        if plan.changes
        else f"  champion: {champion_line(plan.current)} (unchanged)"
    ]
    scheduled = plan.raw.get("evaluations_scheduled")
    extra = f", {scheduled} evaluation(s) would be scheduled" if scheduled else ""
    lines.append(f"  eligible runs: {plan.eligible_count}{extra}")
    if plan.would_leave_no_model:
        lines.append("  refused without --force: it would leave the environment with no model")
    return lines


def latest_label(registry: Registry, dataset: str, cache: dict[str, str] | None = None) -> str:
    """``name@rev`` as given; a bare name → its latest revision's label."""
    if "@" in dataset:
        return dataset
    if cache is not None and dataset in cache:
        return cache[dataset]
    found = registry.dataset(dataset)
    if not found.revisions:
        raise CliError(f"dataset {dataset!r} has no revision")
    label = max(found.revisions, key=lambda r: r.revision).label
    if cache is not None:
        cache[dataset] = label
    return label


def current_policy(registry: Registry, environment: str, model: str) -> Policy | None:
    try:
        return registry.policy(environment, model)
    except NotFound as exc:
        # The environment and the model exist (both named in the details): no policy yet.
        if exc.code == "not_found" and {"environment", "model"} <= set(exc.details):
            return None
        raise


@click.group()
def policy() -> None:
    """Version-tolerance policies, one per environment and model."""


@policy.command("get")
@click.argument("environment")
@click.argument("model")
@api_command
def policy_get(api: Api, environment: str, model: str) -> None:
    """The policy with its revision (pass it to set --if-match)."""
    found = api.registry.policy(environment, model)
    api.out(found, lambda: _policy_text(found))


def _min_value(text: str | None) -> float | str | None:
    if text is None:
        return "keep"
    if text.lower() in ("none", "null", ""):
        return None
    try:
        return float(text)
    except ValueError:
        message = f"{text!r} is not a number or 'none'"
        raise click.BadParameter(message, param_hint="--min-value") from None


def policy_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The fields of a policy; those left out keep their stored values."""
    for option in reversed(
        [
            click.option("--versions", default=None, help='PEP 440 specifier set ("" = any)'),
            click.option(
                "--stages",
                default=None,
                metavar="S1,S2",
                help=f"allowed stages, comma-separated ({', '.join(STAGES)})",
            ),
            click.option("--metric", default=None),
            click.option(
                "--dataset",
                default=None,
                metavar="NAME[@REV]",
                help="a name takes its latest revision",
            ),
            click.option(
                "--direction",
                type=click.Choice(["max", "min"]),
                default=None,
                help="default: from the metric's name",
            ),
            click.option("--min-value", default=None, metavar="X|none"),
            click.option("--min-improvement", type=float, default=None),
            click.option("--allow-prereleases/--no-allow-prereleases", default=None),
            click.option("--require-verified/--no-require-verified", default=None),
            click.option(
                "--formats",
                default=None,
                metavar="F1,F2",
                help='artifact formats a run may have, e.g. skops,onnx ("" = the server\'s)',
            ),
        ]
    ):
        func = option(func)
    return func


def _merged(api: Api, current: Policy | None, given: dict[str, Any]) -> dict[str, Any]:
    """The stored policy with the given options over it, in canonical form."""
    options = {k: v for k, v in given.items() if v is not None}
    options["min_value"] = _min_value(given.get("min_value"))
    if options["min_value"] == "keep":
        del options["min_value"]
    if "stages" in options:
        options["stages"] = [s.strip() for s in options["stages"].split(",") if s.strip()]
    if "formats" in options:
        options["formats"] = [f.strip() for f in options["formats"].split(",") if f.strip()]
    base = stored(current)
    if base is None:
        missing = [f"--{k}" for k in ("stages", "metric", "dataset") if k not in options]
        if missing:
            raise click.UsageError(f"a new policy needs {', '.join(missing)}")
        base = {}
    elif "metric" in options and "direction" not in options:
        base.pop("direction")  # the new metric's own default
    body = {**base, **options}
    if "dataset" in options and not DATASET.fullmatch(options["dataset"]):
        raise click.BadParameter(
            f"{options['dataset']!r} is not NAME or NAME@REV", param_hint="--dataset"
        )
    try:
        return normalized(body, latest_label(api.registry, body["dataset"]))
    except PolicyFileError as exc:
        raise click.UsageError(str(exc)) from None


@policy.command("set", short_help="Create a policy, or change some of its fields.")
@click.argument("environment")
@click.argument("model")
@policy_options
@click.option("--reason", required=True, help="why (kept with the policy and in the audit trail)")
@click.option("--force", is_flag=True, help="even if the environment is left with no model")
@click.option(
    "--if-match",
    type=int,
    default=None,
    metavar="REVISION",
    help="refuse (412) unless the stored revision is still this one",
)
@api_command
def policy_set(
    api: Api,
    environment: str,
    model: str,
    reason: str,
    force: bool,
    if_match: int | None,
    **given: Any,
) -> None:
    """Create a policy, or change some of its fields (the others keep their values).

    The change is sent with If-Match: the revision it was computed from (or
    --if-match), so a concurrent change is a 412, never overwritten.
    """
    current = current_policy(api.registry, environment, model)
    body = _merged(api, current, given)
    changes = diff(stored(current), body)
    if current is not None and not changes:
        api.out(current, lambda: f"{environment}/{model}: no change (revision {current.revision})")
        return
    revision = if_match if if_match is not None else (current.revision if current else None)
    saved = api.registry.put_policy(
        environment, model, reason=reason, force=force, if_match=revision, **body
    )

    def render() -> str:
        before = f"revision {current.revision} → " if current else "new policy, "
        moved = "now" if saved.champion_changed else "still"
        return "\n".join(
            [
                f"{environment}/{model}: {before}revision {saved.revision}",
                *diff_lines(changes, current is None),
                f"  champion {moved}: {champion_line(saved.champion)}",
            ]
        )

    api.out(saved, render)


@policy.command("plan", short_help="Dry run of `policy set`: the champion it would choose.")
@click.argument("environment")
@click.argument("model")
@policy_options
@api_command
def policy_plan(api: Api, environment: str, model: str, **given: Any) -> None:
    """What `policy set` with the same options would do to the champion; nothing is stored."""
    current = current_policy(api.registry, environment, model)
    body = _merged(api, current, given)
    changes = diff(stored(current), body)
    plan = api.registry.plan_policy(environment, model, **body)
    head = "new policy" if current is None else f"revision {current.revision}"
    lines = [f"{environment}/{model}: {head}" + ("" if changes else ", no field changes")]
    api.out(
        plan,
        lambda: "\n".join([*lines, *diff_lines(changes, current is None), *plan_lines(plan)]),
    )


COMMANDS: list[click.Command] = [policy]
