"""Benchmark: server-side evaluation jobs, sandboxed against in-process, and their latency.

    .venv/bin/python bench/evaluate.py [--database sqlite|postgresql] [--jobs N] [--rounds R]
        [--poll-ms 500,50] [--latency-runs N] [--json]

The work is in ``evalbench.py``; see there and ``bench/README.md``.

This file is deliberately tiny and imports nothing at module level: the sandbox's
children are forked from a ``multiprocessing`` fork server, and every child
re-executes the parent's main script (as ``__mp_main__``) before it runs the job.
In service the main module is ``modelreg.cli.main`` (``python -m modelreg worker``,
preloaded by the fork server) or the 8-line ``modelreg`` console script, so that
costs nothing; a benchmark whose main script compiled 700 lines and imported the
Flask app would add its own import time to every sandboxed job.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from evalbench import main

    sys.exit(main())
