"""Names of models, environments, datasets and metrics, and the keys that make them unique."""

from __future__ import annotations

import re

from modelreg.errors import ValidationFailed
from modelreg.policies.versions import InvalidVersionError, canonical_version, normalize_version

VERSION_LEN = 128  # the column's width
SPECIFIER_LEN = 512
NAME_LEN = 100  # the name columns' width: the most max_name_length may allow

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
NAME_RE = re.compile(NAME_PATTERN)
NAME_HELP = "1-100 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


def name_key(name: str) -> str:
    """The case-insensitive key of a name: ``AImodel`` and ``aimodel`` are one model."""
    return name.lower()


def check_name(field: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationFailed.field(field, f"invalid name {name!r}: {NAME_HELP}")
    return name


def parse_version_field(field: str, text: str) -> tuple[str, str]:
    """``(normalized, canonical)`` forms of a version, or a 422 naming ``field``."""
    try:
        normalized, canonical = normalize_version(text), canonical_version(text)
    except InvalidVersionError as exc:
        raise ValidationFailed.field(field, str(exc)) from None
    if len(normalized) > VERSION_LEN:
        raise ValidationFailed.field(field, f"at most {VERSION_LEN} characters once normalized")
    return normalized, canonical
