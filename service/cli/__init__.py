"""The ``modelreg`` command.

The server side (``serve``, ``worker``, ``token``, ``db``, ``doctor``) is in :mod:`.main`;
the commands that talk to a registry over HTTP are added by :mod:`.remote`.
"""
