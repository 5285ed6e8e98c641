"""glibc malloc settings for a server that streams large uploads through its threads.

An upload passes through a few buffers of about 1 MiB per MiB received (gunicorn's
reads, the parser's chunks). Each gunicorn thread allocates from its own glibc arena,
which returns its free top to the kernel once it exceeds ``M_TRIM_THRESHOLD`` (twice
the mmap threshold, which glibc raises to the largest block freed so far: ~2 MiB
here). Freeing two buffers was then enough to trim, and the next buffers' pages were
faulted in and zeroed again, on every MiB. ``bench/upload.py`` measured it: the first
1 GiB upload of a worker took 2.1-3.1 s and later ones 1.7-2.2 s; with these settings
every round took 1.7-1.8 s, and the worker's memory grew by 14-28 MiB either way.

An operator's own ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` wins: then
nothing is changed. Elsewhere than on glibc (musl, macOS) nothing is changed either.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

# mallopt() parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

TRIM_THRESHOLD = 16 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024
_OPERATOR_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def tune_for_streaming(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set the thresholds in this process (forked workers inherit them); what was set.

    >>> tune_for_streaming({"MALLOC_TRIM_THRESHOLD_": "1048576"})
    {}
    """
    if any(name in environ for name in _OPERATOR_SETTINGS):
        return {}
    if platform.libc_ver()[0] != "glibc":
        return {}
    libc = ctypes.CDLL(None)  # this process's own C library
    applied = {}
    for name, parameter, value in (
        ("mmap_threshold", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("trim_threshold", _M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ):
        if libc.mallopt(parameter, value) == 1:  # 1: accepted
            applied[name] = value
    return applied
