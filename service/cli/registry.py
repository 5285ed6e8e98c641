"""``modelreg models …``, ``versions …`` and ``stage``: names, versions and their stages."""

from __future__ import annotations

from collections.abc import Iterable

import click

from modelreg.cli.common import (
    STAGES,
    Api,
    api_command,
    items,
    notice,
    pairs,
    parse_pairs,
    table,
)
from modelreg.client.resources import Model, Outcome, Version


def versions_table(versions: Iterable[Version]) -> str:
    return table(
        ["version", "stage", "prerelease", "created", "description"],
        [[v.version, v.stage, v.is_prerelease, v.created_at, v.description] for v in versions],
    )


def outcomes_table(outcomes: Iterable[Outcome]) -> str:
    moved = [o for o in outcomes if o.changed]
    if not moved:
        return "no champion changed"
    return table(
        ["environment", "model", "from run", "to run", "reason"],
        [[o.environment, o.model, o.before, o.after, o.reason] for o in moved],
    )


@click.group()
def models() -> None:
    """Registered models."""


@models.command("list")
@api_command
def models_list(api: Api) -> None:
    """List the models."""
    found = api.registry.models()
    api.out(
        items(found),
        lambda: table(
            ["name", "versions", "created", "description"],
            [[m.name, len(m.versions), m.created_at, m.description] for m in found],
        ),
    )


def _model_text(model: Model) -> str:
    head = pairs(
        [
            ("name", model.name),
            ("description", model.description),
            ("tags", model.tags),
            ("created", model.created_at),
        ]
    )
    return f"{head}\n\n{versions_table(model.versions)}" if model.versions else head


@models.command("show")
@click.argument("model")
@api_command
def models_show(api: Api, model: str) -> None:
    """A model with its versions (PEP 440 order)."""
    found = api.registry.model(model)
    api.out(found, lambda: _model_text(found))


@models.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="a tag (repeatable)")
@api_command
def models_create(api: Api, name: str, description: str, tags: tuple[str, ...]) -> None:
    """Register a model."""
    created = api.registry.create_model(name, description, parse_pairs(tags, "--tag"))
    api.out(created, lambda: f"model {created.name} registered")


@click.group()
def versions() -> None:
    """Versions of a model's code (PEP 440)."""


@versions.command("list")
@click.argument("model")
@click.option("--spec", default=None, help="a PEP 440 specifier set, e.g. '<=2.0'")
@click.option("--stage", type=click.Choice(STAGES, case_sensitive=False), default=None)
@click.option("--prereleases/--no-prereleases", default=None, help="include pre-releases")
@api_command
def versions_list(
    api: Api, model: str, spec: str | None, stage: str | None, prereleases: bool | None
) -> None:
    """A model's versions in PEP 440 order, filtered."""
    found = api.registry.versions(model, spec=spec, stage=stage, prereleases=prereleases)
    api.out(items(found), lambda: versions_table(found))


def _version_text(v: Version) -> str:
    return pairs(
        [
            ("model", v.model),
            ("version", v.version),
            ("stage", v.stage),
            ("prerelease", v.is_prerelease),
            ("description", v.description),
            ("tags", v.tags),
            ("created", v.created_at),
        ]
    )


@versions.command("show")
@click.argument("model")
@click.argument("version")
@api_command
def versions_show(api: Api, model: str, version: str) -> None:
    """One version (``1.0.0`` finds ``1.0``)."""
    found = api.registry.version(model, version)
    api.out(found, lambda: _version_text(found))


@versions.command("create")
@click.argument("model")
@click.argument("version")
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="a tag (repeatable)")
@api_command
def versions_create(
    api: Api, model: str, version: str, description: str, tags: tuple[str, ...]
) -> None:
    """Register a new version of MODEL, in stage None.

    A version written in another spelling (``v3``, ``2.0-RC1``) is stored in its
    PEP 440 normal form (``3``, ``2.0rc1``); a notice on stderr says so.
    """
    created = api.registry.create_version(model, version, description, parse_pairs(tags, "--tag"))
    if created.normalized_from is not None:
        notice(
            f"version {created.normalized_from} is stored as {created.version} "
            "(PEP 440 normal form)"
        )
    api.out(created, lambda: f"{created.model} {created.version} registered (stage None)")


@versions.command("delete")
@click.argument("model")
@click.argument("version")
@click.option("--reason", required=True, help="why (kept in the audit trail)")
@click.option(
    "--force",
    is_flag=True,
    help="also remove its runs (their champions move, even if an environment is left with none)",
)
@api_command
def versions_delete(api: Api, model: str, version: str, reason: str, force: bool) -> None:
    """Remove VERSION of MODEL; one with runs only with --force, which removes them too.

    Without --force a version with runs is refused (409 conflict, exit 1).
    """
    outcomes = api.registry.delete_version(model, version, reason=reason, force=force)
    api.out(
        {"champions": outcomes},
        lambda: f"{model} {version} removed\n{outcomes_table(outcomes)}",
    )


@click.command(short_help="Move a version to another stage.")
@click.argument("model")
@click.argument("version")
@click.argument("stage", type=click.Choice(STAGES, case_sensitive=False))
@click.option("--reason", default="", help="why (required into or out of Production)")
@click.option(
    "--from-stage",
    type=click.Choice(STAGES, case_sensitive=False),
    default=None,
    help="refuse (409) unless the version is still in this stage",
)
@click.option("--force", is_flag=True, help="even if an environment is left with no model")
@api_command
def stage(
    api: Api, model: str, version: str, stage: str, reason: str, from_stage: str | None, force: bool
) -> None:
    """Move VERSION of MODEL to STAGE (None, Staging, Production, Archived).

    Prints the version's new stage and every champion the move changed.
    """
    moved, outcomes = api.registry.transition(
        model, version, stage, reason=reason, force=force, from_stage=from_stage
    )
    api.out(
        {"version": moved, "champions": list(outcomes)},
        lambda: f"{moved.model} {moved.version}: now {moved.stage}\n{outcomes_table(outcomes)}",
    )


COMMANDS: list[click.Command] = [models, versions, stage]
