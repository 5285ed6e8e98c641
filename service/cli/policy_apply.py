"""``modelreg policy apply FILE``: make the registry's policies those of a TOML file.

Everything is read, checked and planned before the first write: the file's shape and
values, that every model and dataset exists, each policy's field changes (against
the stored policy, in canonical form) and the champion change each would cause. A
policy already as the file says is "no change" and is not written at all, so applying
a file twice leaves revisions and the audit trail as they were. The writes themselves
are one request per policy (the API has no batch): a failure part-way says which
policies were applied before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from modelreg.cli.common import Api, CliError, InputError, api_command, describe
from modelreg.cli.policy import (
    current_policy,
    diff_lines,
    latest_label,
    plan_lines,
    stored,
)
from modelreg.cli.policy_file import (
    PolicyFile,
    PolicyFileError,
    Wanted,
    diff,
    load,
    normalized,
    shown,
)
from modelreg.client import Registry, RegistryError
from modelreg.client.resources import Environment, Plan, Policy


@dataclass
class EnvChange:
    """An environment to create, or whose description the file changes."""

    name: str
    exists: bool
    before: str
    after: str | None

    def line(self) -> str:
        was = f"description {shown(self.before)}" if self.exists else "create"
        then = f" → {shown(self.after)}" if self.after is not None else ""
        return f"environment {self.name}: {was}{then}"


@dataclass
class Item:
    """One policy of the file: what is stored, what is wanted, what changing it does."""

    wanted: Wanted
    current: Policy | None
    body: dict[str, Any]
    changes: dict[str, tuple[Any, Any]]
    plan: Plan | None = None
    saved: Policy | None = None

    @property
    def action(self) -> str:
        if self.current is None:
            return "create"
        return "update" if self.changes else "unchanged"

    def lines(self) -> list[str]:
        key, current = self.wanted.key, self.current
        if current is None:
            head = f"{key}: new policy"
        elif not self.changes:
            return [f"{key}: no change (revision {current.revision})"]
        else:
            head = f"{key}: revision {current.revision} → {current.revision + 1}"
        if self.plan is not None:
            effect = plan_lines(self.plan)
        else:  # no environment yet, so nothing to plan against
            effect = [
                f"  champion: none → chosen once environment {self.wanted.environment} exists"
            ]
        return [head, *diff_lines(self.changes, current is None), *effect]

    def document(self) -> dict[str, Any]:
        return {
            "environment": self.wanted.environment,
            "model": self.wanted.model,
            "action": self.action,
            "revision": self.current.revision if self.current else None,
            "changes": {k: list(v) for k, v in self.changes.items()},
            "plan": self.plan.raw if self.plan else None,
            "policy": self.saved.raw if self.saved else None,
        }


def environment_changes(spec: PolicyFile, known: dict[str, Environment]) -> list[EnvChange]:
    names = {w.environment for w in spec.policies} | set(spec.descriptions)
    changes = []
    for name in sorted(names):
        found = known.get(name.lower())
        after = spec.descriptions.get(name)
        if found is None:
            changes.append(EnvChange(name, False, "", after))
        elif after is not None and after != found.description:
            changes.append(EnvChange(name, True, found.description, after))
    return changes


def assess(
    reg: Registry, wanted: Wanted, known: dict[str, Environment], labels: dict[str, str]
) -> Item:
    """Compare one wanted policy with the stored one and plan the change."""
    reg.model(wanted.model)  # a missing model is an error before anything is written
    body = normalized(wanted.body, latest_label(reg, wanted.body["dataset"], labels))
    exists = wanted.environment.lower() in known
    current = current_policy(reg, wanted.environment, wanted.model) if exists else None
    item = Item(wanted, current, body, diff(stored(current), body))
    if item.changes and exists:
        item.plan = reg.plan_policy(wanted.environment, wanted.model, **body)
    return item


def write(
    reg: Registry, envs: list[EnvChange], items: list[Item], reason: str, force: bool
) -> None:
    for env in envs:
        reg.put_environment(env.name, env.after)
    done: list[str] = []
    for item in items:
        if item.action == "unchanged":
            continue
        revision = item.current.revision if item.current else None
        try:
            item.saved = reg.put_policy(
                item.wanted.environment,
                item.wanted.model,
                reason=reason,
                force=force,
                if_match=revision,
                **item.body,
            )
        except RegistryError as exc:
            applied = f" (applied before it: {', '.join(done)})" if done else ""
            raise CliError(f"{item.wanted.key}: {describe(exc)}{applied}") from None
        done.append(item.wanted.key)


@click.command("apply", short_help="Make the policies those of a TOML file.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", default=None, help="why (required unless --dry-run)")
@click.option("--dry-run", is_flag=True, help="show what would change; change nothing")
@click.option("--force", is_flag=True, help="even if an environment is left with no model")
@api_command
def apply(api: Api, file: Path, reason: str | None, dry_run: bool, force: bool) -> None:
    """Make the registry's policies those of FILE (TOML; see config/policies.example.toml).

    Prints, for each policy, the field changes and the champion change they cause,
    then applies them (unless --dry-run). A policy already as the file says prints
    "no change" and is not written. Missing environments are created.
    """
    if not dry_run and not reason:
        raise click.UsageError("--reason is required (unless --dry-run)")
    try:
        spec = load(file)
    except PolicyFileError as exc:
        raise InputError(str(exc)) from None
    reg = api.registry
    known = {e.name.lower(): e for e in reg.environments()}
    envs = environment_changes(spec, known)
    labels: dict[str, str] = {}
    items = []
    for wanted in spec.policies:
        try:
            items.append(assess(reg, wanted, known, labels))
        except PolicyFileError as exc:
            raise InputError(f"{file}: {wanted.key}: {exc}") from None
    if not api.as_json:
        click.echo("\n".join([*(e.line() for e in envs), *(x for i in items for x in i.lines())]))
    refused = [i.wanted.key for i in items if i.plan and i.plan.would_leave_no_model]
    if refused and not force:
        raise CliError(f"{', '.join(refused)} would leave no model to serve; pass --force")
    if not dry_run:
        write(reg, envs, items, reason or "", force)
    counts = {a: sum(i.action == a for i in items) for a in ("create", "update", "unchanged")}
    done = "dry run, nothing applied" if dry_run else "applied"
    api.out(
        {
            "dry_run": dry_run,
            "environments": [e.name for e in envs],
            "policies": [i.document() for i in items],
        },
        lambda: (
            f"{done}: {counts['create']} created, {counts['update']} updated, "
            f"{counts['unchanged']} unchanged"
        ),
    )
