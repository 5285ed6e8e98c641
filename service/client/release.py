"""The release engineers' and serving layers' half of :class:`Registry`: environments,
policies, champions, pins, tokens and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modelreg.client.resources import (
    AuditEntry,
    Champion,
    Environment,
    Explanation,
    HistoryItem,
    Pin,
    Plan,
    Policy,
    Token,
)
from modelreg.client.transport import Transport
from modelreg.client.transport import segment as _seg


class ReleaseMethods:
    _http: Transport

    # -- environments, policies, champions -------------------------------------------------

    def put_environment(self, name: str, description: str | None = None) -> Environment:
        body = {} if description is None else {"description": description}
        return Environment.from_json(
            self._http.json("PUT", f"/environments/{_seg(name)}", json_body=body)
        )

    def environment(self, name: str) -> Environment:
        return Environment.from_json(self._http.json("GET", f"/environments/{_seg(name)}"))

    def environments(self) -> list[Environment]:
        return [Environment.from_json(e) for e in self._http.pages("/environments")]

    def policy(self, environment: str, model: str) -> Policy:
        path = f"/environments/{_seg(environment)}/policies/{_seg(model)}"
        return Policy.from_json(self._http.json("GET", path))

    def put_policy(
        self,
        environment: str,
        model: str,
        *,
        metric: str,
        dataset: str,
        reason: str,
        versions: str = "",
        stages: tuple[str, ...] | list[str] = ("Production",),
        direction: str | None = None,
        min_value: float | None = None,
        min_improvement: float = 0.0,
        allow_prereleases: bool = False,
        require_verified: bool | None = None,
        formats: Sequence[str] | None = None,
        force: bool = False,
        if_match: int | None = None,
    ) -> Policy:
        """Create or replace a policy. Replacing needs the revision you last saw
        (``if_match``): a stale one raises :class:`PreconditionFailed`.

        ``require_verified=None`` takes the server's default (true when the dataset
        revision has content); ``formats=None`` the server's ``allowed_formats``."""
        body = _policy_body(
            versions, stages, metric, dataset, direction, min_value, min_improvement,
            allow_prereleases, require_verified, formats,
        )  # fmt: skip
        body.update(reason=reason, force=force)
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        path = f"/environments/{_seg(environment)}/policies/{_seg(model)}"
        return Policy.from_json(self._http.json("PUT", path, json_body=body, headers=headers))

    def plan_policy(
        self,
        environment: str,
        model: str,
        *,
        metric: str,
        dataset: str,
        versions: str = "",
        stages: tuple[str, ...] | list[str] = ("Production",),
        direction: str | None = None,
        min_value: float | None = None,
        min_improvement: float = 0.0,
        allow_prereleases: bool = False,
        require_verified: bool | None = None,
        formats: Sequence[str] | None = None,
    ) -> Plan:
        """What :meth:`put_policy` would do; nothing is stored."""
        body = _policy_body(
            versions, stages, metric, dataset, direction, min_value, min_improvement,
            allow_prereleases, require_verified, formats,
        )  # fmt: skip
        path = f"/environments/{_seg(environment)}/policies/{_seg(model)}/plan"
        return Plan.from_json(self._http.json("POST", path, json_body=body))

    def champion(self, environment: str, model: str) -> Champion:
        """The run ``environment`` serves; :class:`NoEligibleModel` when there is none."""
        champion, _ = self.champion_if_changed(environment, model, None)
        assert champion is not None  # no etag given: never 304
        return champion

    def champion_if_changed(
        self, environment: str, model: str, etag: str | None
    ) -> tuple[Champion | None, str | None]:
        """A cheap poll: ``(None, etag)`` while the champion matches ``etag`` (304)."""
        headers = {"If-None-Match": etag} if etag else None
        path = f"/environments/{_seg(environment)}/models/{_seg(model)}"
        response = self._http.request("GET", path, headers=headers, ok=(304,))
        if response.status_code == 304:
            return None, etag
        return Champion.from_json(response.json()), response.headers.get("ETag")

    def explain(self, environment: str, model: str) -> Explanation:
        path = f"/environments/{_seg(environment)}/models/{_seg(model)}/explain"
        return Explanation.from_json(self._http.json("GET", path))

    def history(self, environment: str, model: str) -> list[HistoryItem]:
        path = f"/environments/{_seg(environment)}/models/{_seg(model)}/history"
        return [HistoryItem.from_json(h) for h in self._http.pages(path)]

    def get_pin(self, environment: str, model: str) -> Pin:
        """The pin of ``environment`` for ``model``: its run, reason, who and when.

        No pin (the policy decides) raises :class:`NotFound`, as does an unknown
        environment, model or policy."""
        path = f"/environments/{_seg(environment)}/models/{_seg(model)}/pin"
        return Pin.from_json(self._http.json("GET", path))

    def pin(self, environment: str, model: str, run_id: int, *, reason: str) -> Champion | None:
        path = f"/environments/{_seg(environment)}/models/{_seg(model)}/pin"
        doc = self._http.json("PUT", path, json_body={"run_id": int(run_id), "reason": reason})
        return Champion.from_json(doc["champion"]) if doc.get("champion") else None

    def unpin(self, environment: str, model: str, *, reason: str) -> Champion | None:
        path = f"/environments/{_seg(environment)}/models/{_seg(model)}/pin"
        doc = self._http.json("DELETE", path, json_body={"reason": reason})
        return Champion.from_json(doc["champion"]) if doc.get("champion") else None

    # -- tokens and audit ----------------------------------------------------------------

    def create_token(self, name: str, role: str, expires_at: datetime | None = None) -> Token:
        """A new token; its ``secret`` is in this result and nowhere else."""
        body: dict[str, Any] = {"name": name, "role": role}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        return Token.from_json(self._http.json("POST", "/tokens", json_body=body))

    def token(self, token_id: int) -> Token:
        """One token, without its secret."""
        return Token.from_json(self._http.json("GET", f"/tokens/{int(token_id)}"))

    def tokens(self) -> list[Token]:
        return [Token.from_json(t) for t in self._http.pages("/tokens")]

    def revoke_token(self, token_id: int) -> Token:
        return Token.from_json(self._http.json("DELETE", f"/tokens/{int(token_id)}"))

    def audit(
        self,
        *,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
    ) -> list[AuditEntry]:
        when = since.isoformat() if isinstance(since, datetime) else since
        params = {"actor": actor, "target": target, "action": action, "since": when}
        return [AuditEntry.from_json(a) for a in self._http.pages("/audit", params)]


def _policy_body(
    versions: str,
    stages: tuple[str, ...] | list[str],
    metric: str,
    dataset: str,
    direction: str | None,
    min_value: float | None,
    min_improvement: float,
    allow_prereleases: bool,
    require_verified: bool | None,
    formats: Sequence[str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "versions": versions,
        "stages": list(stages),
        "metric": metric,
        "dataset": dataset,
        "min_improvement": min_improvement,
        "allow_prereleases": allow_prereleases,
    }
    if require_verified is not None:
        body["require_verified"] = require_verified
    if formats is not None:
        body["formats"] = list(formats)
    if direction is not None:
        body["direction"] = direction
    if min_value is not None:
        body["min_value"] = min_value
    return body
