"""Who is calling. Runs before every handler, so a token check can take its place.

Until tokens exist (issue 4), the actor is a self-declared label from the
``X-Modelreg-Actor`` header, or ``anonymous``. It is recorded in history, never
trusted for a decision.
"""

from __future__ import annotations

from flask import Flask, g, request

from service.names import NAME_RE

ACTOR_HEADER = "X-Modelreg-Actor"


def identify() -> None:
    declared = request.headers.get(ACTOR_HEADER, "")
    g.actor = declared if NAME_RE.fullmatch(declared) else "anonymous"


def register(app: Flask) -> None:
    app.before_request(identify)
