"""Prometheus metrics: request latency, champion changes, evaluation jobs.

``modelreg serve`` runs several gunicorn worker processes, and a scrape reaches
only one of them. It therefore runs prometheus-client's multiprocess mode: it
points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any worker (or
its evaluation worker) starts, every process writes its values to files there,
and a scrape merges them all (:func:`exposition`). prometheus-client picks its
mode when it is first imported, so ``modelreg.cli.main`` imports this module only
after setting the variable. Without it (tests, another WSGI server with one
process) the values live in this process's default registry.

- ``modelreg_http_request_duration_seconds{route, method, status}``: one
  observation per request, labelled by the route *template*
  (``/api/v1/environments/<env>/models/<model>``; ``unmatched`` for 404/405
  without a route), never the raw path.
- ``modelreg_champion_changes_total{environment, model}``: history rows
  committed. ``champions`` notes each change in the session's ``info``; the
  count moves when that transaction commits, and a rollback forgets it.
- ``modelreg_artifact_integrity_failures_total``: downloads of stored bytes that
  did not hash to their name (each one quarantined and audited as
  ``artifact.corrupt``).
- ``modelreg_evaluation_jobs{state}``: computed at scrape time from the
  database (one ``GROUP BY`` on the jobs' ``(state, available_at)`` index), so
  it is right whichever process or machine changed a job.
- ``modelreg_evaluation_duration_seconds{state}``: observed by an evaluation
  worker that shares the directory (the one ``serve`` runs itself).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from modelreg.db.models import Job
from modelreg.db.session import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"

if os.environ.get(MULTIPROC_ENV) and not getattr(values.ValueClass, "_multiprocess", False):
    # prometheus-client was imported before the variable was set: our metrics, made
    # below, must still write to the shared directory.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
# No ``*_created`` series (multiprocess mode has none either): the same scrape both ways.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Fine at the low end: a champion lookup takes about half a millisecond.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

HTTP_DURATION = Histogram(
    "modelreg_http_request_duration_seconds",
    "Time from routing to response, by route template, method and status",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
CHAMPION_CHANGES = Counter(
    "modelreg_champion_changes",
    "Champion changes committed (one per history row), by environment and model",
    ["environment", "model"],
)
INTEGRITY_FAILURES = Counter(
    "modelreg_artifact_integrity_failures",
    "Downloads cut short because the stored bytes did not hash to their sha256",
)
EVALUATION_DURATION = Histogram(
    "modelreg_evaluation_duration_seconds",
    "Wall time of one evaluation job, claim to result, by final state",
    ["state"],
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)

_JOB_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
_JOB_COUNTS = select(Job.state, func.count()).group_by(Job.state)
_PENDING_CHANGES = "modelreg.champion_changes"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


# -- champion changes: counted once committed ----------------------------------------


def note_champion_change(session: Session, environment: str, model: str) -> None:
    """A history row for (``environment``, ``model``) was added to ``session``'s
    transaction; it is counted if and when that transaction commits."""
    session.info.setdefault(_PENDING_CHANGES, []).append((environment, model))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for environment, model in session.info.pop(_PENDING_CHANGES, ()):
        CHAMPION_CHANGES.labels(environment, model).inc()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING_CHANGES, None)


# -- requests --------------------------------------------------------------------------


# (route, method, status) -> its histogram child: ``labels()`` takes a lock and converts
# its arguments on every call; this dict is as bounded as the label values.
_http_children: dict[tuple[str | None, str, int], Any] = {}


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    child = _http_children.get(key)
    if child is None:
        child = HTTP_DURATION.labels(route or UNMATCHED, method, str(status))
        _http_children[key] = child
    child.observe(seconds)


# -- scraping --------------------------------------------------------------------------


class JobsCollector:
    """``modelreg_evaluation_jobs{state}`` from the database, at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        try:
            with self.db.read_engine.connect() as conn:
                counts = {state: n for state, n in conn.execute(_JOB_COUNTS)}
        except SQLAlchemyError:
            return  # the database is away: no job numbers rather than wrong ones
        family = GaugeMetricFamily(
            "modelreg_evaluation_jobs",
            "Evaluation jobs by state (from the database)",
            labels=["state"],
        )
        for state in sorted(set(_JOB_STATES) | set(counts)):
            family.add_metric([state], counts.get(state, 0))
        yield family


class _Collected:
    """What another collector yields (the default registry), inside a scrape's registry."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        collected: Iterable[Metric] = self.source.collect()
        return collected


def exposition(db: Database, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type: every process's values and the job counts."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path is not None:
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Collected(REGISTRY))
    registry.register(JobsCollector(db))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


def mark_process_dead(pid: int) -> None:
    """gunicorn's ``child_exit``: a worker's live gauges go with it (counters stay)."""
    from prometheus_client import multiprocess

    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
