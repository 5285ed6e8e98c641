"""The ``modelreg`` commands that talk to a registry over HTTP.

They use the Python client (``requests``) only — never Flask or SQLAlchemy — and
are added to the ``modelreg`` group of :mod:`modelreg.cli.main` by :func:`add_to`. Each
takes ``--url`` / ``MODELREG_URL``, ``--token`` / ``MODELREG_TOKEN`` and ``--json``
(see :mod:`modelreg.cli.common`).
"""

from __future__ import annotations

import click

from modelreg.cli import demo, envs, policy, policy_apply, registry, runs


def add_to(group: click.Group) -> None:
    """Register every HTTP command on ``group`` (the ``modelreg`` command)."""
    policy.policy.add_command(policy_apply.apply)
    for module in (registry, runs, envs, policy, demo):
        for command in module.COMMANDS:
            group.add_command(command)
