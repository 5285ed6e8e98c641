"""Commands that need the server extra: refused, clearly, in the base install.

``pip install modelreg`` is the client and the HTTP commands; ``serve``, ``worker``,
``doctor``, ``token``, ``db`` (and ``demo``, which trains scikit-learn models) need
``pip install 'modelreg[server]'``. Their modules import the server's libraries only
when they run, so their ``--help`` works in either install; run without the extra,
they end with one line naming the missing module and the install line, exit status 2.
"""

from __future__ import annotations

from typing import Any

import click

INSTALL_SERVER = "pip install 'modelreg[server]'"


class ServerExtraMissing(click.ClickException):
    """A command of the server extra in an install without it: exit status 2."""

    exit_code = 2


class ServerCommand(click.Command):
    """A command that runs the server's code (or its scientific stack)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if not missing or missing == "modelreg":  # our own bug, not a missing extra
                raise
            raise ServerExtraMissing(
                f"{ctx.command_path} needs the server extra, which is not installed here "
                f"(no module named {missing!r}). Install modelreg[server]: {INSTALL_SERVER}"
            ) from None


class ServerGroup(click.Group):
    """``token`` and ``db``: every subcommand is a :class:`ServerCommand`."""

    command_class = ServerCommand
