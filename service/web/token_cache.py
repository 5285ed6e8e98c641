"""Verified tokens, remembered per process: a serving layer's poll reads the database
once (its champion), not twice (its token, then its champion).

PostgreSQL only, and only while this process listens for changes to ``api_tokens``:
a trigger (migration 0004) sends ``NOTIFY modelreg_tokens`` with every insert,
update or delete of that table, whoever makes it — the API, ``modelreg token
revoke``, or SQL typed by hand. A listener thread hears it when the change commits
and the process forgets every token it remembered. While the listener is not
connected (starting, the database away), every request reads its token from the
database as without a cache. An entry is also re-read after ``token_cache_seconds``
whatever happens, which bounds the damage of a notification lost in some way we did
not foresee; 0 turns the cache off. Only tokens that were found are remembered:
an unknown secret always costs a read. Expiry is checked on every request against the
remembered ``expires_at``.

What it saves: one indexed read per request, ~0.2 ms of ~1.4 ms on a champion poll
(``bench/resolve.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Row

from modelreg.db.session import Database

CHANNEL = "modelreg_tokens"
# A silent listener connection is checked this often; libpq's keepalives (session.py)
# bound how long a vanished server can keep the check waiting.
HEARTBEAT_SECONDS = 10.0
RETRY_SECONDS = 2.0
MAX_ENTRIES = 10_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    row: Row[Any]
    fetched: float
    generation: int


class TokenCache:
    """``lookup(statement, digest)``: the token's row, from memory when it may be."""

    def __init__(self, db: Database, ttl_seconds: float) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._enabled = ttl_seconds > 0 and not db.is_sqlite
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        # Bumped by every notification and every (re)connection of the listener: an
        # entry read before a bump is stale, even if it is stored after it.
        self._generation = 0
        self._listening = False
        self._owner_pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None  # a pipe that interrupts select()
        db.on_dispose(self.close)

    @property
    def listening(self) -> bool:
        return self._listening

    def lookup(self, statement: Executable, digest: str) -> Row[Any] | None:
        if not self._enabled:
            return self._db.lookup(statement, {"digest": digest})
        self._start_in_this_process()
        with self._lock:
            generation, listening = self._generation, self._listening
            hit = self._entries.get(digest)
        now = time.monotonic()
        if (
            listening
            and hit is not None
            and hit.generation == generation
            and now - hit.fetched < self._ttl
        ):
            return hit.row
        row = self._db.lookup(statement, {"digest": digest})
        if row is not None and listening:
            with self._lock:
                if self._generation == generation and self._listening:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[digest] = _Entry(row, now, generation)
        return row

    def forget_all(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def close(self) -> None:
        """Stop this process's listener and close its connection (with the Database)."""
        self._stop.set()
        thread, wake = self._thread, self._wake
        if thread is None or wake is None or self._owner_pid != os.getpid():
            return
        os.write(wake[1], b"x")
        thread.join(timeout=5)
        for fd in wake:
            os.close(fd)
        self._thread = self._wake = None

    # -- the listener ------------------------------------------------------------------

    def _start_in_this_process(self) -> None:
        # gunicorn forks its workers after the app exists: each process needs its own
        # listener, and a child must not trust what its parent remembered.
        pid = os.getpid()
        if self._owner_pid == pid:
            return
        with self._lock:
            if self._owner_pid == pid:
                return
            self._owner_pid = pid
            self._listening = False
            self._generation += 1
            self._entries.clear()
            self._stop = threading.Event()
            self._wake = os.pipe()
            self._thread = threading.Thread(
                target=self._listen,
                args=(self._stop, self._wake[0]),
                name="token-cache",
                daemon=True,
            )
        self._thread.start()

    def _set_listening(self, listening: bool) -> None:
        with self._lock:
            self._listening = listening
            self._generation += 1
            self._entries.clear()

    def _listen(self, stop: threading.Event, wake: int) -> None:
        while not stop.is_set():
            connection = None
            try:
                connection = self._db.lookup_engine.raw_connection()
                connection.detach()  # ours alone, never back into the pool
                dbapi: Any = connection.dbapi_connection
                dbapi.autocommit = True
                with dbapi.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
                self._set_listening(True)
                self._wait_for_changes(dbapi, stop, wake)
            except Exception as exc:  # the database away: read every token meanwhile
                if self._listening:
                    log.warning("token cache off until the database answers: %s", exc)
                self._set_listening(False)  # before the wait: no entry trusted meanwhile
                stop.wait(RETRY_SECONDS)
            finally:
                self._set_listening(False)  # also when stopped or returned normally
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()

    def _wait_for_changes(self, dbapi: Any, stop: threading.Event, wake: int) -> None:
        while not stop.is_set():
            readable, _, _ = select.select([dbapi, wake], [], [], HEARTBEAT_SECONDS)
            if wake in readable:
                return
            if not readable:
                with dbapi.cursor() as cursor:  # still there?
                    cursor.execute("SELECT 1")
            dbapi.poll()
            if dbapi.notifies:
                dbapi.notifies.clear()
                self.forget_all()
