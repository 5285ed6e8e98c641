"""Time, in one place: aware UTC datetimes and their ISO 8601 form."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    # SQLite returns naive datetimes; everything we store is UTC.
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
