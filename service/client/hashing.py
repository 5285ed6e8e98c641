"""sha256 of a stream of chunks, on a thread of its own once the stream is large.

The client's verified downloads use it, and so do the server's uploads and downloads:
it lives here, in the part of the package that the base install needs, because the
client must import nothing of the server (the server install includes the client).

hashlib releases the GIL while it hashes, so on a second thread the hashing of
one chunk overlaps receiving and writing the next. In a profile of a 1 GiB
upload, hashing was 28% of the request thread's time; a download verified by the
client pays the same. Small streams are hashed inline: they do not pay for a
thread. Chunks are handed over in batches of about 1 MiB (handing over each
64 KiB chunk cost more than it saved) and at most ``QUEUED`` batches wait, so
memory stays bounded.
"""

from __future__ import annotations

import hashlib
import queue
import threading

BACKGROUND_AFTER = 4 * 1024 * 1024
BATCH = 1024 * 1024
QUEUED = 4


class StreamingSha256:
    """``update()`` chunks in order, then ``hexdigest()`` once; ``close()`` if abandoned."""

    def __init__(self, background_after: int = BACKGROUND_AFTER) -> None:
        self._hash = hashlib.sha256()
        self._after = background_after
        self._seen = 0
        self._thread: threading.Thread | None = None
        self._batches: queue.Queue[list[bytes] | None] = queue.Queue(QUEUED)
        self._batch: list[bytes] = []
        self._batched = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._seen += len(data)
        if self._thread is None and self._seen <= self._after:
            self._hash.update(data)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()
        # The caller may reuse a mutable buffer once this returns; bytes it cannot.
        self._batch.append(data if type(data) is bytes else bytes(data))
        self._batched += len(data)
        if self._batched >= BATCH:
            self._batches.put(self._batch)
            self._batch, self._batched = [], 0

    def hexdigest(self) -> str:
        self._finish()
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop the thread, if any (the digest is then of what was hashed so far)."""
        self._finish()

    def _finish(self) -> None:
        if self._thread is None:
            return
        self._batches.put(self._batch)
        self._batches.put(None)
        self._thread.join()
        self._thread = None
        self._batch, self._batched = [], 0

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            for chunk in batch:
                self._hash.update(chunk)
