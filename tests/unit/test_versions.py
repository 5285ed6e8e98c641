"""PEP 440 versions and tolerances (``modelreg.policies.versions``).

Expectations come from PEP 440 (normalization, ordering, specifier semantics) and from
DESIGN.md: ``1.0`` and ``1.0.0`` are one version; pre-releases are only in a tolerance
when the caller says they are allowed.
"""

from __future__ import annotations

import itertools

import pytest

from modelreg.policies.versions import (
    InvalidVersionError,
    canonical_version,
    in_tolerance,
    is_prerelease,
    normalize_version,
    parse_specifier,
    parse_version,
)

INVALID_VERSIONS = ["", "   ", "latest", "v", "1..0", "1.0+", "x1.0", "1.0.*", "==1.0", "1.0 1"]
INVALID_SPECIFIERS = ["<=one", "=>1.0", "1.0", "latest", "~=1", "<=1.0.*", "<<1.0"]

# Spellings PEP 440 declares equal: same version, whatever the spelling.
EQUAL_SPELLINGS = [
    ("1.0", "1.0.0"),
    ("1.0", "v1"),
    ("1", "1.0.0.0"),
    ("1.0", " 1.0 "),
    ("0!1.0", "1.0"),
    ("1.0a1", "1.0alpha1"),
    ("1.0b2", "1.0-beta.2"),
    ("1.0rc1", "1.0c1"),
    ("1.0rc1", "1.0pre1"),
    ("1.0rc1", "1.0.0rc1"),
    ("1.0.post1", "1.0-1"),
    ("1.0.post1", "1.0.0-rev1"),
    ("1.0.post0", "1.0.post"),
    ("1.0.dev0", "1.0-dev"),
    ("1.0+abc", "1.0+ABC"),
    ("1.0+abc", "1.0.0+abc"),
    ("1.0+ab.1", "1.0+ab-1"),
    ("1.0+ab.1", "1.0+ab_1"),
    ("1.0+abc.1", "1.0+abc.01"),
]

# Different versions, however close their spellings.
DIFFERENT_VERSIONS = [
    ("1.0", "1.0rc1"),
    ("1.0", "1.0.dev0"),
    ("1.0", "1.0.post1"),
    ("1.0", "1.0+abc"),
    ("1.0+abc", "1.0+abd"),
    ("1.0", "1.0.1"),
    ("1.1", "1.10"),
    ("1.0", "10.0"),
    ("1.0", "1!1.0"),
]

# Strictly increasing in PEP 440 order.
ASCENDING = [
    "0.9",
    "1.0.dev1",
    "1.0a1.dev1",
    "1.0a1",
    "1.0b1",
    "1.0rc1",
    "1.0",
    "1.0+local",
    "1.0.post1.dev1",
    "1.0.post1",
    "1.0.1",
    "1.9",
    "1.10",
    "2.0",
    "10.0",
    "1!0.1",
]


# -- parse_version ---------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), EQUAL_SPELLINGS)
def test_equal_spellings_parse_to_equal_versions(a, b):
    assert parse_version(a) == parse_version(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT_VERSIONS)
def test_different_versions_parse_to_unequal_versions(a, b):
    assert parse_version(a) != parse_version(b)


@pytest.mark.parametrize(("lower", "higher"), list(itertools.pairwise(ASCENDING)))
def test_versions_are_ordered_by_pep_440_not_by_text(lower, higher):
    assert parse_version(lower) < parse_version(higher)


def test_sorting_a_shuffled_list_of_versions_gives_pep_440_order():
    shuffled = ASCENDING[::2] + ASCENDING[1::2][::-1]
    assert sorted(shuffled, key=parse_version) == ASCENDING


@pytest.mark.parametrize("text", INVALID_VERSIONS)
def test_parse_version_rejects_what_pep_440_does_not_accept(text):
    with pytest.raises(InvalidVersionError):
        parse_version(text)


def test_invalid_version_error_is_a_value_error():
    assert issubclass(InvalidVersionError, ValueError)
    with pytest.raises(ValueError, match="latest"):
        parse_version("latest")


# -- normalize_version -----------------------------------------------------------------


NORMALIZED = [
    ("1.0", "1.0"),
    ("1.0.0", "1.0.0"),  # trailing zeros are kept: equal to 1.0, but spelled as given
    ("v1.0", "1.0"),
    (" 1.0\n", "1.0"),
    ("01.002", "1.2"),
    ("0!1.0", "1.0"),
    ("1!2.0", "1!2.0"),
    ("V2.0-RC.1", "2.0rc1"),
    ("1.0ALPHA1", "1.0a1"),
    ("1.0-a.1", "1.0a1"),
    ("1.0beta2", "1.0b2"),
    ("1.0c1", "1.0rc1"),
    ("1.0preview1", "1.0rc1"),
    ("1.0a", "1.0a0"),
    ("1.0-1", "1.0.post1"),
    ("1.0.post", "1.0.post0"),
    ("1.0-rev3", "1.0.post3"),
    ("1.0r3", "1.0.post3"),
    ("1.0-dev", "1.0.dev0"),
    ("1.0dev2", "1.0.dev2"),
    ("1.0.post1.dev2", "1.0.post1.dev2"),
    ("1.0+Local.Build", "1.0+local.build"),
    ("1.0+Ubuntu-1", "1.0+ubuntu.1"),
    ("1.0+abc_def", "1.0+abc.def"),
]


@pytest.mark.parametrize(("text", "normalized"), NORMALIZED)
def test_normalize_version_gives_the_pep_440_normal_form(text, normalized):
    assert normalize_version(text) == normalized


@pytest.mark.parametrize(("text", "_"), NORMALIZED)
def test_normalizing_a_normalized_version_changes_nothing(text, _):
    once = normalize_version(text)
    assert normalize_version(once) == once


@pytest.mark.parametrize(("text", "_"), NORMALIZED)
def test_normalizing_keeps_the_version_equal_to_the_input(text, _):
    assert parse_version(normalize_version(text)) == parse_version(text)


@pytest.mark.parametrize("text", INVALID_VERSIONS)
def test_normalize_version_rejects_invalid_versions(text):
    with pytest.raises(InvalidVersionError):
        normalize_version(text)


# -- canonical_version -----------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), EQUAL_SPELLINGS)
def test_equal_versions_share_one_canonical_key(a, b):
    assert canonical_version(a) == canonical_version(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT_VERSIONS)
def test_different_versions_have_different_canonical_keys(a, b):
    assert canonical_version(a) != canonical_version(b)


_POOL = sorted({v for pair in EQUAL_SPELLINGS + DIFFERENT_VERSIONS for v in pair} | set(ASCENDING))


@pytest.mark.parametrize("a", _POOL)
def test_canonical_keys_are_equal_exactly_when_versions_are_equal(a):
    for b in _POOL:
        assert (canonical_version(a) == canonical_version(b)) == (
            parse_version(a) == parse_version(b)
        ), (a, b)


@pytest.mark.parametrize("text", INVALID_VERSIONS)
def test_canonical_version_rejects_invalid_versions(text):
    with pytest.raises(InvalidVersionError):
        canonical_version(text)


# -- is_prerelease ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0a1", True),
        ("2.0b1", True),
        ("2.0rc1", True),
        ("2.0c1", True),
        ("2.0.dev3", True),
        ("2.0a1.dev1", True),
        ("2.0rc1.post1", True),
        ("2.0.post1.dev1", True),  # a dev release, even of a post-release
        ("2.0", False),
        ("2.0.0", False),
        ("2.0.post1", False),  # post-releases are not pre-releases
        ("2.0+local", False),
        ("1!2.0", False),
    ],
)
def test_is_prerelease_is_true_for_alpha_beta_rc_and_dev_releases_only(text, expected):
    assert is_prerelease(text) is expected


@pytest.mark.parametrize("text", INVALID_VERSIONS)
def test_is_prerelease_rejects_invalid_versions(text):
    with pytest.raises(InvalidVersionError):
        is_prerelease(text)


# -- parse_specifier -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("", "   "),
        ("<=1.0", " <= 1.0 "),
        (" <= 2.0 , >1 ", ">1,<=2.0"),
        (">=1.0,<2", "<2 , >=1.0"),
    ],
)
def test_whitespace_and_clause_order_do_not_change_a_specifier(a, b):
    assert parse_specifier(a) == parse_specifier(b)


@pytest.mark.parametrize("text", ["", "   "])
def test_the_empty_specifier_has_no_clauses(text):
    assert len(parse_specifier(text)) == 0


@pytest.mark.parametrize("text", INVALID_SPECIFIERS)
def test_parse_specifier_rejects_invalid_specifiers_with_a_value_error(text):
    with pytest.raises(InvalidVersionError) as info:
        parse_specifier(text)
    assert isinstance(info.value, ValueError)


# -- in_tolerance ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "version", "allow", "expected"),
    [
        # equal spellings of the bound are inside it
        ("<=1.0", "1.0", False, True),
        ("<=1.0", "1.0.0", False, True),
        ("<=1.0", "v1", False, True),
        ("<=1.0.0", "1.0", False, True),
        ("==1.0", "1.0.0", False, True),
        ("<=1.0", "0.9", False, True),
        ("<=1.0", "1.0.1", False, False),
        ("<=1.9", "1.10", False, False),  # 1.10 > 1.9 in PEP 440 order
        # local versions: ignored against a public specifier, except by exclusive >
        ("<=1.0", "1.0+local", False, True),
        ("==1.0", "1.0+abc", False, True),
        (">1.0", "1.0+local", False, False),
        # post-releases come after the release; >V excludes post-releases of V
        ("<=1.0", "1.0.post1", False, False),
        (">=1.0", "1.0.post1", False, True),
        (">1.0", "1.0.post1", False, False),
        (">1.0", "1.0.1", False, True),
        # dev releases are pre-releases
        ("<=1.0", "1.0.dev1", False, False),
        ("<=1.0", "1.0.dev1", True, True),
        (">=1.0", "1.0.dev1", True, False),  # 1.0.dev1 < 1.0
        # pre-releases only when allowed, whatever the specifier
        ("<=2.0", "2.0rc1", False, False),
        ("<=2.0", "2.0rc1", True, True),
        (">=2.0rc1", "2.0rc1", False, False),
        (">=2.0rc1", "2.0rc1", True, True),
        ("<2.0", "2.0rc1", True, False),  # <V excludes pre-releases of V
        ("<2.0", "1.9", False, True),
        # ranges, wildcards, exclusions, compatible release
        (">=1.0,<2", "1.5", False, True),
        (">=1.0,<2", "2.0", False, False),
        (">=1.0,<2", "0.9", False, False),
        ("==1.*", "1.5", False, True),
        ("==1.*", "2.0", False, False),
        ("!=1.5", "1.5.0", False, False),
        ("!=1.5", "1.6", False, True),
        ("~=1.4", "1.9", False, True),
        ("~=1.4", "2.0", False, False),
        # the empty specifier takes any final version; pre-releases still need allowing
        ("", "3.0", False, True),
        ("", "0.0.1", False, True),
        ("", "3.0rc1", False, False),
        ("", "3.0rc1", True, True),
        ("", "3.0.post2", False, True),
    ],
)
def test_in_tolerance_follows_pep_440_and_the_explicit_prerelease_flag(
    spec, version, allow, expected
):
    assert in_tolerance(parse_specifier(spec), version, allow_prereleases=allow) is expected


@pytest.mark.parametrize("version", ["1.0", "0.5", "1.0.post1", "2.0"])
def test_allowing_prereleases_never_excludes_a_final_release(version):
    spec = parse_specifier("<=1.0")
    assert in_tolerance(spec, version, allow_prereleases=True) == in_tolerance(
        spec, version, allow_prereleases=False
    )


@pytest.mark.parametrize("version", INVALID_VERSIONS)
def test_in_tolerance_rejects_an_invalid_version(version):
    with pytest.raises(InvalidVersionError):
        in_tolerance(parse_specifier(""), version, allow_prereleases=True)
