"""modelreg serve's malloc settings (service/runtime/malloc.py)."""

from __future__ import annotations

import platform

import pytest

from modelreg.runtime.malloc import MMAP_THRESHOLD, TRIM_THRESHOLD, tune_for_streaming


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_on_glibc_both_thresholds_are_raised_for_megabyte_buffers() -> None:
    applied = tune_for_streaming({})

    assert applied == {"mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    assert TRIM_THRESHOLD > 2 * MMAP_THRESHOLD > 2 * 1024 * 1024


@pytest.mark.parametrize("name", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"])
def test_an_operators_own_malloc_setting_leaves_malloc_alone(name: str) -> None:
    assert tune_for_streaming({name: "131072"}) == {}
