"""API tokens: created with a role, shown once, stored as a hash, revoked at once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelreg.changes.unit import Change
from modelreg.clock import iso
from modelreg.db.models import ApiToken, utcnow
from modelreg.db.pagination import Page, offset_page
from modelreg.errors import AlreadyExists, NotFound, ValidationFailed
from modelreg.names import check_name, name_key
from modelreg.roles import ROLES, Caller, secret_digest

SECRET_PREFIX = "mr_"


def new_secret() -> str:
    """256 random bits, URL-safe, recognizable by its prefix (secret scanners use it)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Created:
    token: ApiToken
    secret: str  # shown once, never stored


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _document(token: ApiToken) -> dict[str, Any]:
    """A token as the audit trail keeps it: never its secret, nor its prefix."""
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
    }


def create(
    session: Session,
    name: str,
    role: str,
    *,
    expires_at: datetime | None = None,
    caller: Caller,
) -> Created:
    """A new token, audited; the caller commits. The secret exists only in the return value."""
    check_name("name", name)
    if role not in ROLES:
        raise ValidationFailed.field("role", f"must be one of {', '.join(ROLES)}")
    if expires_at is not None and _aware(expires_at) <= utcnow():
        raise ValidationFailed.field("expires_at", "must be in the future")
    if session.scalar(select(ApiToken.id).where(ApiToken.name_key == name_key(name))):
        raise AlreadyExists(f"a token named {name!r} exists", {"name": name})
    secret = new_secret()
    token = ApiToken(
        name=name,
        name_key=name_key(name),
        role=role,
        secret_sha256=secret_digest(secret),
        prefix=secret[: len(SECRET_PREFIX) + 6],
        created_by=caller.name,
        expires_at=expires_at,
    )
    with Change(session, caller, "token.create") as change:
        session.add(token)
        try:
            session.flush()
        except IntegrityError:
            raise AlreadyExists(f"a token named {name!r} exists", {"name": name}) from None
        change.record(target=f"tokens/{token.id}", before=None, after=_document(token))
    return Created(token, secret)


def get(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} not found", {"token_id": token_id})
    return token


def revoke(session: Session, token_id: int, *, caller: Caller) -> ApiToken:
    """Revoke a token, audited (also when it was revoked already).

    Every request with it is refused from the commit on.
    """
    token = get(session, token_id)
    before = _document(token)
    with Change(session, caller, "token.revoke", f"tokens/{token.id}") as change:
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            token.revoked_by = caller.name
            session.flush()
        change.record(before=before, after=_document(token))
    return token


def list_tokens(session: Session, page_token: str | None, page_size: int) -> Page[ApiToken]:
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    return offset_page(rows, page_token, page_size)


def state(token: ApiToken, now: datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and _aware(token.expires_at) <= (now or utcnow()):
        return "expired"
    return "active"
