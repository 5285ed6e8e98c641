"""Opaque page tokens for every list endpoint.

A token is URL-safe base64 of a small JSON object: ``{"o": offset}`` for lists
in computed order (versions in PEP 440 order), ``{"k": id}`` for keyset pages
(newest-first history). Clients must treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from modelreg.db.models import MAX_ID
from modelreg.errors import BadRequest

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str | None


def encode_token(**fields: int) -> str:
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, field: str) -> int | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)[field]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("page_token is not a token this service issued") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise BadRequest("page_token is not a token this service issued")
    return value


def offset_page(items: Sequence[T], token: str | None, size: int) -> Page[T]:
    """One page of an already ordered sequence."""
    start = decode_token(token, "o") or 0
    chunk = list(items[start : start + size])
    more = start + size < len(items)
    return Page(chunk, encode_token(o=start + size) if more else None)
