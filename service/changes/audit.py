"""The audit trail: one row per state-changing request, in the change's own transaction.

Service functions call :func:`record` just before they commit, with the
:class:`~modelreg.access.roles.Caller` the view passed them: the row commits with the
change or rolls back with it, so the log never shows a change that did not
happen, nor misses one that did. ``before`` and ``after`` are small JSON
documents of the changed object (never a secret). A request that changes
nothing (a policy ``PUT`` with the same body, a dataset registered again) is
still recorded: it was a deliberate act, and its reason may matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from modelreg.access.roles import Caller
from modelreg.changes.champions import Outcome
from modelreg.db.models import NAME_LEN, AuditEntry
from modelreg.db.pagination import Page, decode_token, encode_token
from modelreg.errors import ValidationFailed

_LIKE_ESCAPE = "\\"


def record(
    session: Session,
    caller: Caller,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str = "",
) -> AuditEntry:
    """Add an audit row to ``session``'s transaction; the caller commits."""
    entry = AuditEntry(
        actor=caller.name[:NAME_LEN],
        role=caller.role[:16],
        action=action,
        target=target[:512],
        before=before,
        after=after,
        reason=reason,
        request_id=caller.request_id[:64],
    )
    session.add(entry)
    return entry


def require_reason(reason: str | None, what: str) -> str:
    """A non-blank reason, or a 422 on field ``reason``."""
    if reason is None or not reason.strip():
        raise ValidationFailed.field("reason", f"a reason is required for {what}")
    return reason


def champion_moves(outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    """The champions a change moved, for an ``after`` document."""
    return [
        {"environment": o.environment, "from_run_id": o.before, "to_run_id": o.after}
        for o in outcomes
        if o.changed
    ]


def _like_prefix(value: str) -> str:
    """``value`` as a literal LIKE prefix.

    >>> _like_prefix("models/a_b%c")
    'models/a\\\\_b\\\\%c/%'
    """
    escaped = (
        value.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )
    return escaped + "/%"


def entries(
    session: Session,
    *,
    actor: str | None = None,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    page_token: str | None,
    page_size: int,
) -> Page[AuditEntry]:
    """Audit rows, newest first, paged by id so new rows never shift a page.

    ``target`` matches that target and everything under it (``models/m`` matches
    ``models/m/versions/1.0``), ignoring case as names do; ``actor`` and
    ``action`` match exactly; ``since`` keeps rows at or after that moment.
    """
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    key = (target or "").strip().rstrip("/").lower()
    if key:
        # Names are unique case-insensitively; SQLite's LIKE ignores ASCII case and
        # PostgreSQL's does not, so both sides are lower-cased for the same answer.
        lowered = func.lower(AuditEntry.target)
        query = query.where(
            or_(lowered == key, lowered.like(_like_prefix(key), escape=_LIKE_ESCAPE))
        )
    if since is not None:
        query = query.where(AuditEntry.at >= since.astimezone(UTC))
    before = decode_token(page_token, "k")
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(page_size + 1)))
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(rows, encode_token(k=rows[-1].id) if more else None)
