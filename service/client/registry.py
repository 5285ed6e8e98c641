"""``Registry``: one method per API operation, typed results, errors as exceptions.

Methods come in the order of the API: health; models and versions; runs; server-side
evaluation; datasets; environments, policies and champions; tokens and the audit log.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from modelreg.client.errors import Conflict, NotFound, RegistryError
from modelreg.client.resources import (
    AuditEntry,
    Champion,
    Dataset,
    DatasetRevision,
    Environment,
    Evaluation,
    Explanation,
    HistoryItem,
    Job,
    Model,
    ModelEvaluation,
    Outcome,
    Pin,
    Plan,
    Policy,
    Run,
    Token,
    Version,
)
from modelreg.client.transport import (
    MultipartStream,
    Progress,
    Transport,
    json_part,
    progress_for,
    save_verified,
    sha256_of,
)
from modelreg.client.transport import segment as _seg

DEFAULT_TIMEOUT = 60.0


class Registry:
    """A modelreg server: ``Registry("http://127.0.0.1:5000", token)``.

    ``session`` is the ``requests.Session`` to send through (its adapters, proxies,
    certificates, hooks); the token travels with each request, not in the session's
    headers. A session passed in stays the caller's: :meth:`close` leaves it open.
    Without one, the registry makes its own and closes it.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = Transport(self.url, token, timeout, session)

    def close(self) -> None:
        """Close the pooled connections of the registry's own session (also on leaving a
        ``with`` block); a session passed in is left open."""
        self._http.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether the server and its database answer (``/readyz``)."""
        try:
            self._http.request("GET", f"{self.url}/readyz")
        except RegistryError:
            return False
        return True

    def openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._http.json("GET", "/openapi.json")
        return doc

    # -- models and versions -------------------------------------------------------------

    def create_model(
        self, name: str, description: str = "", tags: Mapping[str, Any] | None = None
    ) -> Model:
        body = {"name": name, "description": description, "tags": dict(tags or {})}
        return Model.from_json(self._http.json("POST", "/models", json_body=body))

    def model(self, name: str) -> Model:
        return Model.from_json(self._http.json("GET", f"/models/{_seg(name)}"))

    def models(self) -> list[Model]:
        return [Model.from_json(m) for m in self._http.pages("/models")]

    def ensure_model(self, name: str, description: str = "") -> Model:
        """The model, registered first if it is missing (safe to repeat, and to race)."""
        try:
            return self.model(name)
        except NotFound:
            pass
        try:
            return self.create_model(name, description)
        except Conflict:
            return self.model(name)

    def create_version(
        self,
        model: str,
        version: str,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
    ) -> Version:
        body = {"version": version, "description": description, "tags": dict(tags or {})}
        path = f"/models/{_seg(model)}/versions"
        return Version.from_json(self._http.json("POST", path, json_body=body))

    def version(self, model: str, version: str) -> Version:
        return Version.from_json(
            self._http.json("GET", f"/models/{_seg(model)}/versions/{_seg(version)}")
        )

    def versions(
        self,
        model: str,
        *,
        spec: str | None = None,
        stage: str | None = None,
        prereleases: bool | None = None,
    ) -> list[Version]:
        params: dict[str, Any] = {"spec": spec, "stage": stage}
        if prereleases is not None:
            params["prereleases"] = str(prereleases).lower()
        path = f"/models/{_seg(model)}/versions"
        return [Version.from_json(v) for v in self._http.pages(path, params)]

    def ensure_version(self, model: str, version: str) -> Version:
        """The version (``1.0.0`` finds ``1.0``), registered first if it is missing."""
        try:
            return self.version(model, version)
        except NotFound:
            pass
        try:
            return self.create_version(model, version)
        except Conflict:
            return self.version(model, version)

    def delete_version(
        self, model: str, version: str, *, reason: str = "", force: bool = False
    ) -> list[Outcome]:
        """Remove a version. One with runs raises :class:`Conflict` (code ``conflict``)
        unless ``force``, which removes its runs too; returns the champions that moved."""
        path = f"/models/{_seg(model)}/versions/{_seg(version)}"
        response = self._http.request("DELETE", path, json_body={"reason": reason, "force": force})
        if response.status_code == 204:  # it had no runs: nothing else moved
            return []
        return [Outcome.from_json(o) for o in response.json().get("champions", [])]

    def transition(
        self,
        model: str,
        version: str,
        stage: str,
        *,
        reason: str = "",
        force: bool = False,
        from_stage: str | None = None,
    ) -> tuple[Version, list[Outcome]]:
        body: dict[str, Any] = {"stage": stage, "reason": reason, "force": force}
        if from_stage is not None:
            body["from_stage"] = from_stage
        path = f"/models/{_seg(model)}/versions/{_seg(version)}/transitions"
        doc = self._http.json("POST", path, json_body=body)
        return Version.from_json(doc["version"]), [Outcome.from_json(o) for o in doc["champions"]]

    def champions(self, model: str) -> list[Champion]:
        return [Champion.from_json(c) for c in self._http.pages(f"/models/{_seg(model)}/champions")]

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self,
        model: str,
        version: str,
        artifact: str | os.PathLike[str],
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
        evaluations: list[dict[str, Any]] | None = None,
        format: str | None = None,
        expected_sha256: str | None = None,
        progress: bool | Progress | None = None,
    ) -> Run:
        """Upload one artifact file as a new run of an existing version (streamed)."""
        path = Path(artifact)
        metadata: dict[str, Any] = {
            "params": dict(params or {}),
            "tags": dict(tags or {}),
            "source": dict(source or {}),
            "evaluations": list(evaluations or []),
            "expected_sha256": expected_sha256 or sha256_of(path),
        }
        if format is not None:
            metadata["format"] = format
        body = MultipartStream(
            {"metadata": json_part(metadata)},
            "artifact",
            path,
            path.name,
            progress_for(f"uploading {path.name}", progress),
        )
        try:
            doc = self._http.json(
                "POST",
                f"/models/{_seg(model)}/versions/{_seg(version)}/runs",
                data=body,
                headers={"Content-Type": body.content_type},
            )
        finally:
            body.close()
        return Run.from_json(doc)

    def register_run(
        self,
        model: str,
        version: str,
        artifact: Any,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        dataset: str | None = None,
        format: str | None = None,
        progress: bool | Progress | None = None,
    ) -> Run:
        """CI's one call: model and version created when missing, then the run.

        ``artifact`` is a path, or an estimator object (dumped with joblib to a
        temporary ``.joblib`` file). ``metrics`` are reported on ``dataset``
        (``name`` or ``name@rev``). The upload is streamed, with a progress bar on a
        terminal, and carries ``expected_sha256`` so a corrupted transfer is refused.
        """
        if metrics and not dataset:
            raise ValueError("metrics need the dataset they were measured on")
        self.ensure_model(model)
        self.ensure_version(model, version)
        evaluations = [{"dataset": dataset, "metrics": dict(metrics)}] if metrics else []
        if isinstance(artifact, str | os.PathLike):
            return self.create_run(
                model,
                version,
                artifact,
                params=params,
                tags=tags,
                source=source,
                evaluations=evaluations,
                format=format,
                progress=progress,
            )
        import joblib  # only for estimator objects

        with tempfile.TemporaryDirectory(prefix="modelreg-") as tmp:
            path = Path(tmp) / f"{model}-{version}.joblib"
            joblib.dump(artifact, path)
            return self.create_run(
                model,
                version,
                path,
                params=params,
                tags=tags,
                source=source,
                evaluations=evaluations,
                format=format or "joblib",
                progress=progress,
            )

    def run(self, run_id: int) -> Run:
        return Run.from_json(self._http.json("GET", f"/runs/{int(run_id)}"))

    def runs(self, model: str, version: str) -> list[Run]:
        path = f"/models/{_seg(model)}/versions/{_seg(version)}/runs"
        return [Run.from_json(r) for r in self._http.pages(path)]

    def delete_run(self, run_id: int, *, reason: str = "", force: bool = False) -> list[Outcome]:
        doc = self._http.json(
            "DELETE", f"/runs/{int(run_id)}", json_body={"reason": reason, "force": force}
        )
        return [Outcome.from_json(o) for o in doc.get("champions", [])]

    def download_artifact(
        self,
        run_id: int,
        destination: str | os.PathLike[str],
        *,
        expected_sha256: str | None = None,
        progress: bool | Progress | None = False,
    ) -> Path:
        """Stream a run's artifact to ``destination``; verified against its sha256."""
        response = self._http.request("GET", f"/runs/{int(run_id)}/artifact", stream=True)
        expected = expected_sha256 or response.headers.get("ETag", "").strip('"')
        return save_verified(response, Path(destination), expected, progress)

    def add_evaluation(
        self, run_id: int, dataset: str, metrics: Mapping[str, float]
    ) -> list[Evaluation]:
        doc = self._http.json(
            "POST",
            f"/runs/{int(run_id)}/evaluations",
            json_body={"dataset": dataset, "metrics": dict(metrics)},
        )
        return [Evaluation.from_json(e) for e in doc["items"]]

    def evaluations(self, run_id: int) -> list[Evaluation]:
        return [
            Evaluation.from_json(e) for e in self._http.pages(f"/runs/{int(run_id)}/evaluations")
        ]

    # -- server-side evaluation ----------------------------------------------------------

    def evaluate(self, run_id: int, dataset: str) -> Job:
        doc = self._http.json(
            "POST", f"/runs/{int(run_id)}/evaluate", json_body={"dataset": dataset}
        )
        return Job.from_json(doc)

    def evaluate_model(
        self, model: str, dataset: str, *, versions: str | None = None
    ) -> ModelEvaluation:
        """Score every run of ``model`` (of the ``versions`` specifier) on a revision with
        content: a job per run not yet scored there. Needs a release token."""
        body: dict[str, Any] = {"dataset": dataset}
        if versions is not None:
            body["versions"] = versions
        doc = self._http.json("POST", f"/models/{_seg(model)}/evaluate", json_body=body)
        return ModelEvaluation.from_json(doc)

    def wait_for_jobs(
        self,
        job_ids: Iterable[int],
        *,
        timeout: float = 3600,
        poll: float = 1.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Job]:
        """Poll until every job in ``job_ids`` has ended; returns those that did not
        succeed (failed or cancelled), by id: an empty list means all succeeded.

        Each poll lists the pending and running jobs (two paged reads, whatever the
        number of ids); ``progress(done, total)`` is called after each one.
        """
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            active = {j.id for state in ("pending", "running") for j in self.jobs(state=state)}
            left = wanted & active
            if progress is not None:
                progress(len(wanted) - len(left), len(wanted))
            if not left:
                ended = [j for s in ("failed", "cancelled") for j in self.jobs(state=s)]
                return sorted((j for j in ended if j.id in wanted), key=lambda j: j.id)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(left)} of {len(wanted)} jobs still pending or running after "
                    f"{timeout:g} s"
                )
            time.sleep(poll)

    def job(self, job_id: int) -> Job:
        return Job.from_json(self._http.json("GET", f"/jobs/{int(job_id)}"))

    def jobs(self, *, state: str | None = None, run_id: int | None = None) -> list[Job]:
        return [
            Job.from_json(j) for j in self._http.pages("/jobs", {"state": state, "run_id": run_id})
        ]

    def wait_for_job(self, job_id: int, *, timeout: float = 300, poll: float = 0.5) -> Job:
        """Poll until the job has ended (succeeded, failed or cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout:g} s")
            time.sleep(poll)

    # -- datasets ----------------------------------------------------------------------

    def register_dataset(self, name: str, sha256: str, description: str = "") -> DatasetRevision:
        """A revision by digest only (reported metrics)."""
        body = {"name": name, "sha256": sha256, "description": description}
        return DatasetRevision.from_json(self._http.json("POST", "/datasets", json_body=body))

    def upload_dataset(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        target: str,
        task: str,
        description: str = "",
        progress: bool | Progress | None = None,
    ) -> DatasetRevision:
        """A revision with its content (CSV or gzip'd CSV): the service evaluates on it."""
        file = Path(path)
        meta = {"name": name, "target": target, "task": task, "description": description}
        body = MultipartStream(
            {"metadata": json_part(meta)},
            "file",
            file,
            file.name,
            progress_for(f"uploading {file.name}", progress),
        )
        try:
            doc = self._http.json(
                "POST",
                "/datasets",
                data=body,
                headers={"Content-Type": body.content_type},
            )
        finally:
            body.close()
        return DatasetRevision.from_json(doc)

    def dataset(self, name: str) -> Dataset:
        return Dataset.from_json(self._http.json("GET", f"/datasets/{_seg(name)}"))

    def datasets(self) -> list[Dataset]:
        return [Dataset.from_json(d) for d in self._http.pages("/datasets")]

    def dataset_revision(self, name: str, revision: int) -> DatasetRevision:
        path = f"/datasets/{_seg(name)}/revisions/{int(revision)}"
        return DatasetRevision.from_json(self._http.json("GET", path))

    def download_dataset(
        self, name: str, revision: int, destination: str | os.PathLike[str]
    ) -> Path:
        path = f"/datasets/{_seg(name)}/revisions/{int(revision)}/content"
        response = self._http.request("GET", path, stream=True)
        expected = response.headers.get("ETag", "").strip('"')
        return save_verified(response, Path(destination), expected, False)

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
