"""The examples in the docstrings hold: every module of ``modelreg`` is doctested.

They are collected by import name (``modelreg.…``), as users import them.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import modelreg

# `python -m modelreg` runs the command line on import.
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(modelreg.__path__, "modelreg.")
    if not m.name.endswith(".__main__")
)
WITH_EXAMPLES = [
    name
    for name in MODULES
    if any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))
]


def test_the_examples_are_found_in_the_core_and_the_server() -> None:
    assert "modelreg.policies.versions" in WITH_EXAMPLES
    assert any(not name.startswith("modelreg.policies") for name in WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_the_examples_in_the_docstrings_of_a_module_hold(name: str) -> None:
    # ELLIPSIS, as pytest's doctest runner had it: long reprs end in "...".
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
