"""modelreg: the web service, its storage, its Python client and its command line.

The rules (versions, tolerances, selection) live in the pure ``policies``
package; this package loads and stores data around them and speaks HTTP.

Two installs: ``pip install modelreg`` is the client (``modelreg.client``) and the
``modelreg`` command's HTTP commands, for CI runners and serving layers, and loads
nothing of the server; ``pip install 'modelreg[server]'`` adds the server, its
database and the evaluation worker (``modelreg serve``, ``worker``, ``db``, …).
"""
