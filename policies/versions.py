"""PEP 440 versions and version tolerances (specifier sets).

Versions are compared in PEP 440 order; two spellings of one version (``1.0`` and
``1.0.0``) share one canonical key. Tolerances are ``SpecifierSet`` strings where
the empty string means "any version". Pre-releases are never decided by
``packaging``'s defaults: callers say whether they are allowed, every time.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_version
from packaging.version import Version


class InvalidVersionError(ValueError):
    """A version or specifier string that PEP 440 does not accept."""


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_version(text: str) -> Version:
    """Parse a PEP 440 version, or raise :class:`InvalidVersionError`.

    >>> parse_version("1.0")
    <Version('1.0')>
    >>> parse_version(" v2.0rc1 ")
    <Version('2.0rc1')>
    >>> parse_version("latest")
    Traceback (most recent call last):
    ...
    modelreg.policies.versions.InvalidVersionError: invalid PEP 440 version: 'latest'
    """
    try:
        return Version(text.strip())
    except ValueError:  # InvalidVersion, or a number too long for int()
        raise InvalidVersionError(f"invalid PEP 440 version: {_short(text)!r}") from None


def normalize_version(text: str) -> str:
    """The normalized spelling of a version, as it is stored and shown.

    Normalization keeps trailing zeros: ``1.0.0`` stays ``1.0.0`` (it is *equal* to
    ``1.0``, see :func:`canonical_version`), but spelling variants collapse.

    >>> normalize_version("1.0.0")
    '1.0.0'
    >>> normalize_version("V2.0-RC.1")
    '2.0rc1'
    >>> normalize_version("1.0+Local.Build")
    '1.0+local.build'
    """
    return str(parse_version(text))


def canonical_version(text: str) -> str:
    """The key under which equal versions are the same version.

    ``1.0`` and ``1.0.0`` are equal in PEP 440 and get one key, so a model can hold
    only one of them.

    >>> canonical_version("1.0") == canonical_version("1.0.0") == canonical_version("v1")
    True
    >>> canonical_version("1.0rc1") == canonical_version("1.0")
    False
    >>> canonical_version("1.0+abc") == canonical_version("1.0")
    False
    """
    return canonicalize_version(parse_version(text))


def is_prerelease(text: str) -> bool:
    """Whether a version is a pre-release (``a``, ``b``, ``rc`` or ``.dev``).

    Post-releases are not pre-releases.

    >>> [is_prerelease(v) for v in ("2.0rc1", "2.0.dev3", "2.0", "2.0.post1")]
    [True, True, False, False]
    """
    return parse_version(text).is_prerelease


def parse_specifier(text: str) -> SpecifierSet:
    """Parse a version tolerance such as ``<=1.0`` or ``>=1.0,<2``.

    The empty string is the tolerance that takes any version. Whitespace around
    clauses is ignored.

    >>> str(parse_specifier(" <= 2.0 , >1 "))
    '<=2.0,>1'
    >>> parse_specifier("") == parse_specifier("  ")
    True
    >>> parse_specifier("<=one")
    Traceback (most recent call last):
    ...
    modelreg.policies.versions.InvalidVersionError: invalid version specifier: '<=one'
    >>> parse_specifier("<=1." + "9" * 5000)
    Traceback (most recent call last):
    ...
    modelreg.policies.versions.InvalidVersionError: invalid version specifier: '<=1.99999...'
    """
    try:
        spec = SpecifierSet(text.strip())
        # packaging parses a clause's version lazily, at the first comparison; force it
        # now so that an unusable clause is refused here rather than during selection.
        for clause in spec:
            clause.contains("0", prereleases=True)
    except ValueError:  # InvalidSpecifier, or a number too long for int()
        raise InvalidVersionError(f"invalid version specifier: {_short(text)!r}") from None
    return spec


def in_tolerance(spec: SpecifierSet, version: str, *, allow_prereleases: bool) -> bool:
    """Whether ``version`` is inside ``spec``, deciding pre-releases explicitly.

    ``packaging`` 26 lets a pre-release match when ``prereleases`` is left to its
    default; here it never is.

    >>> in_tolerance(parse_specifier("<=1.0"), "1.0.0", allow_prereleases=False)
    True
    >>> in_tolerance(parse_specifier("<=2.0"), "2.0rc1", allow_prereleases=False)
    False
    >>> in_tolerance(parse_specifier("<=2.0"), "2.0rc1", allow_prereleases=True)
    True
    >>> in_tolerance(parse_specifier(""), "3.0", allow_prereleases=False)
    True
    >>> in_tolerance(parse_specifier("<=1.0"), "1.0+local", allow_prereleases=False)
    True
    >>> in_tolerance(parse_specifier("<=1.0"), "1.0.post1", allow_prereleases=False)
    False
    """
    return spec.contains(parse_version(version), prereleases=allow_prereleases)
