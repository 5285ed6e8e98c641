"""``modelreg env …``, ``champion``, ``history``, ``pin``, ``unpin`` and ``pull``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import click

from modelreg.cli.common import (
    Api,
    api_command,
    champion_line,
    items,
    pairs,
    short_sha,
    table,
)
from modelreg.client import NoEligibleModel, NotFound
from modelreg.client.resources import Champion, Environment, Explanation, Pin


def champions_table(champions: Iterable[Champion], pins: Mapping[str, Pin] | None = None) -> str:
    """One row per champion; with ``pins`` (by model), each model's pinned run and why."""
    columns = ["environment", "model", "version", "stage", "run", "#", "metric", "value", "dataset"]
    rows = [
        [
            c.environment,
            c.model,
            c.version,
            c.stage,
            c.run_id,
            c.run_number,
            c.metric.get("name"),
            c.value,
            c.metric.get("dataset"),
        ]
        for c in champions
    ]
    if pins is None:
        return table(columns, rows)
    for row in rows:
        pinned = pins.get(str(row[1]))
        row += [pinned.run_id, pinned.reason] if pinned else [None, None]
    return table([*columns, "pinned run", "pin reason"], rows)


def explain_table(explanation: Explanation) -> str:
    """Every candidate, ranked ones first, with why the others are out."""
    rows = [
        [
            c.rank,
            c.run_id,
            c.version,
            c.run_number,
            c.stage,
            c.value,
            c.raw.get("reported"),
            c.raw.get("verified"),
            "yes" if c.eligible else "no",
            ", ".join([*c.reasons, *(f"warning: {w}" for w in c.warnings)]),
        ]
        for c in explanation.candidates
    ]
    head = (
        f"{explanation.environment}/{explanation.model}: champion run "
        f"{explanation.champion if explanation.champion is not None else 'none'} "
        f"({explanation.reason}), {explanation.metric} on {explanation.dataset}, "
        f"policy revision {explanation.policy_revision}"
    )
    columns = [
        "rank",
        "run",
        "version",
        "#",
        "stage",
        "value",
        "reported",
        "verified",
        "eligible",
        "reasons",
    ]
    return f"{head}\n{table(columns, rows)}"


def champion_text(c: Champion) -> str:
    return pairs(
        [
            ("environment", c.environment),
            ("model", c.model),
            ("version", c.version),
            ("stage", c.stage),
            ("run", c.run_id),
            ("run number", c.run_number),
            ("metric", f"{c.metric.get('name')} = {c.value} on {c.metric.get('dataset')}"),
            ("sha256", c.sha256),
            ("size", c.artifact.get("size")),
            ("url", c.artifact.get("url")),
            ("selected", c.selected_at),
            ("reason", c.reason),
            ("policy revision", c.policy_revision),
        ]
    )


@click.group("env")
def env() -> None:
    """Deployment environments (INT, PROD, …) and their champions."""


@env.command("list")
@api_command
def env_list(api: Api) -> None:
    """Environments with the champion of every model."""
    found = api.registry.environments()

    def render() -> str:
        lines = table(
            ["environment", "description", "models"],
            [[e.name, e.description, len(e.champions)] for e in found],
        )
        served = [c for e in found for c in e.champions]
        return f"{lines}\n\n{champions_table(served)}" if served else lines

    api.out(items(found), render)


def _env_text(e: Environment, pins: Mapping[str, Pin]) -> str:
    head = pairs([("environment", e.name), ("description", e.description)])
    return f"{head}\n\n{champions_table(e.champions, pins)}" if e.champions else head


def _pins(api: Api, e: Environment) -> dict[str, Pin]:
    """The pin of every model the environment serves (a pinned run is always served)."""
    found = {}
    for c in e.champions:
        try:
            found[c.model] = api.registry.get_pin(e.name, c.model)
        except NotFound:
            continue
    return found


@env.command("show")
@click.argument("name")
@api_command
def env_show(api: Api, name: str) -> None:
    """One environment with its champions, and each model's pin (run and reason).

    With --json: the environment's document, plus ``pins``: those of its models."""
    found = api.registry.environment(name)
    pinned = _pins(api, found)
    document = {**found.raw, "pins": [p.raw for p in pinned.values()]}
    api.out(document, lambda: _env_text(found, pinned))


@env.command("put")
@click.argument("name")
@click.option("--description", default=None, help="kept as it is when left out")
@api_command
def env_put(api: Api, name: str, description: str | None) -> None:
    """Create or update an environment."""
    found = api.registry.put_environment(name, description)
    api.out(found, lambda: f"environment {found.name} ({found.description or 'no description'})")


@click.command()
@click.argument("environment")
@click.argument("model")
@click.option("--explain", is_flag=True, help="also every candidate, ranked, with reasons")
@api_command
def champion(api: Api, environment: str, model: str, explain: bool) -> None:
    """The run ENVIRONMENT serves for MODEL.

    Without --explain, no eligible run is an error (404 no_eligible_model, exit 1);
    with --explain the explanation is the answer, champion or not.
    """
    if not explain:
        found = api.registry.champion(environment, model)
        api.out(found, lambda: champion_text(found))
        return
    why = api.registry.explain(environment, model)
    served: Champion | None
    try:
        served = api.registry.champion(environment, model)
    except NoEligibleModel:
        served = None

    def render() -> str:
        top = champion_text(served) if served else f"{environment} serves no {model}"
        return f"{top}\n\n{explain_table(why)}"

    api.out({"champion": served, "explain": why}, render)


@click.command()
@click.argument("environment")
@click.argument("model")
@api_command
def history(api: Api, environment: str, model: str) -> None:
    """Every change of ENVIRONMENT's champion for MODEL, newest first."""
    found = api.registry.history(environment, model)
    api.out(
        items(found),
        lambda: table(
            ["at", "from run", "to run", "reason", "trigger", "actor", "policy", "detail"],
            [
                [
                    h.at,
                    h.from_run_id,
                    h.to_run_id,
                    h.reason,
                    h.trigger,
                    h.actor,
                    h.policy_revision,
                    h.detail,
                ]
                for h in found
            ],
        ),
    )


@click.command()
@click.argument("environment")
@click.argument("model")
@click.argument("run_id", type=int)
@click.option("--reason", required=True, help="why (kept in the history and audit trail)")
@api_command
def pin(api: Api, environment: str, model: str, run_id: int, reason: str) -> None:
    """Serve RUN_ID in ENVIRONMENT whatever the ranking (a rollback)."""
    served = api.registry.pin(environment, model, run_id, reason=reason)
    api.out({"champion": served}, lambda: f"{environment} serves {champion_line(served)}")


@click.command()
@click.argument("environment")
@click.argument("model")
@click.option("--reason", required=True, help="why (kept in the history and audit trail)")
@api_command
def unpin(api: Api, environment: str, model: str, reason: str) -> None:
    """Remove ENVIRONMENT's pin for MODEL: the policy decides again."""
    served = api.registry.unpin(environment, model, reason=reason)
    api.out({"champion": served}, lambda: f"{environment} serves {champion_line(served)}")


@click.command(short_help="Download the champion's artifact, verified by its sha256.")
@click.argument("environment")
@click.argument("model")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="where to write the artifact",
)
@api_command
def pull(api: Api, environment: str, model: str, output: Path) -> None:
    """Download the artifact ENVIRONMENT serves for MODEL, verified by its sha256.

    The file is written only once its bytes match the champion's sha256 (a progress
    bar on a terminal).
    """
    served = api.registry.champion(environment, model)
    path = api.registry.download_artifact(
        int(served.run_id or 0), output, expected_sha256=served.sha256 or None, progress=True
    )
    api.out(
        {"file": str(path), "sha256": served.sha256, "champion": served},
        lambda: f"{path}: {champion_line(served)}, sha256 {short_sha(served.sha256)} verified",
    )


COMMANDS: list[click.Command] = [env, champion, history, pin, unpin, pull]
