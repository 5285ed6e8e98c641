"""The role every route needs: the one place where access is declared.

Keys are Flask endpoints (``blueprint.View``), values map HTTP methods to the
least role (see ``modelreg.roles``). ``HEAD`` is ``GET``; ``OPTIONS`` needs
``reader`` (a CORS preflight from a configured origin needs no token). A test
walks ``app.url_map`` and fails on any route missing here.
Finer rules that depend on the request body live in the service layer (which
transitions ``ci`` may make).
"""

from __future__ import annotations

OPEN_ENDPOINTS = frozenset({"health.healthz", "health.readyz"})

R, CI, REL, ADMIN = "reader", "ci", "release", "admin"

ROUTE_ROLES: dict[str, dict[str, str]] = {
    "api-docs.openapi_json": {"GET": R},
    # Prometheus scrapes with a reader token: not open like the health checks.
    "metrics.scrape": {"GET": R},
    "models.Models": {"GET": R, "POST": CI},
    "models.Model": {"GET": R},
    "models.Versions": {"GET": R, "POST": CI},
    # Removing a version (with force, its runs) can move what PROD serves, like a run.
    "models.Version": {"GET": R},
    "runs.VersionRemoval": {"DELETE": REL},
    # ci: None <-> Staging only; the service checks the stages (access.transition_role).
    "models.Transitions": {"POST": CI},
    "environments.ModelChampions": {"GET": R},
    "runs.Runs": {"GET": R, "POST": CI},
    # Removing a run can move what PROD serves.
    "runs.RunView": {"GET": R, "DELETE": REL},
    "runs.ArtifactView": {"GET": R},
    "runs.Evaluations": {"GET": R, "POST": CI},
    "jobs.EvaluateView": {"POST": CI},
    # Scoring every run of a model costs the workers hours: a release decision.
    "jobs.ModelEvaluateView": {"POST": REL},
    "jobs.Jobs": {"GET": R},
    "jobs.JobView": {"GET": R},
    # A test set revision decides what PROD serves; whoever writes one knows its labels
    # and could train on them: not CI's to register.
    "datasets.Datasets": {"GET": R, "POST": REL},
    "datasets.DatasetView": {"GET": R},
    "datasets.RevisionView": {"GET": R},
    # The labels of the external test set: a model trained on them would be scored on
    # its own training data. Everyone else sees the revision (digest, columns, rows).
    "datasets.RevisionContentView": {"GET": ADMIN},
    "environments.Environments": {"GET": R},
    "environments.EnvironmentView": {"GET": R, "PUT": REL},
    "environments.PolicyView": {"GET": R, "PUT": REL},
    "environments.PlanView": {"POST": REL},
    "environments.ChampionView": {"GET": R},
    "environments.ExplainView": {"GET": R},
    "environments.HistoryView": {"GET": R},
    "environments.PinView": {"GET": R, "PUT": REL, "DELETE": REL},
    "tokens.Tokens": {"GET": ADMIN, "POST": ADMIN},
    "tokens.TokenView": {"GET": ADMIN, "DELETE": ADMIN},
    "audit.Audit": {"GET": REL},
}


def required_role(endpoint: str, method: str) -> str | None:
    """The least role for ``method`` on ``endpoint``; ``None`` when the method is not
    routed there (Flask answers 405). An endpoint missing from the table needs admin:
    forgetting to declare a route never opens it.

    >>> required_role("runs.RunView", "HEAD"), required_role("runs.RunView", "DELETE")
    ('reader', 'release')
    >>> required_role("runs.RunView", "OPTIONS"), required_role("nowhere.View", "GET")
    ('reader', 'admin')
    """
    roles = ROUTE_ROLES.get(endpoint)
    if roles is None:
        return ADMIN
    if method == "OPTIONS":
        return R
    return roles.get("GET" if method == "HEAD" else method)
