"""The wheel holds every package of the source tree, under the one name ``modelreg``."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]


def _packages_on_disk() -> set[str]:
    """Import names of the folders with an ``__init__.py``, as package-dir maps them."""
    mapped = {folder: name for name, folder in _setuptools()["package-dir"].items()}
    found = set()
    for folder, name in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([name, *parts]))
    return found


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    listed = set(_setuptools()["packages"])
    missing = _packages_on_disk() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_listed_package_exists_under_the_one_import_name() -> None:
    listed = set(_setuptools()["packages"])
    assert all(name == "modelreg" or name.startswith("modelreg.") for name in listed)
    # modelreg.defaults is config/, shipped as data (no __init__.py).
    assert listed - _packages_on_disk() == {"modelreg.defaults"}
