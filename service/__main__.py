"""``python -m modelreg …``: the ``modelreg`` command without its console script.

``modelreg serve`` starts its evaluation worker this way: multiprocessing does not
re-import a ``__main__`` module in the sandbox's children, so a job costs no
re-execution of the command line module.
"""

from __future__ import annotations

from modelreg.cli.main import main

main()
