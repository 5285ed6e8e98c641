"""Streamed, content-addressed downloads: a run's artifact, a dataset revision's content.

What is served is what was registered. A stored file this process has not verified
as it is now (``modelreg.storage.artifacts.VerifiedFiles``) is hashed while it streams, and the
last chunk is sent only once the digest matches: on a mismatch the transfer is cut
short (the client sees fewer bytes than ``Content-Length``, never a complete body
with the recorded ETag), the file is quarantined, and the failure is audited
(``artifact.corrupt``) and counted (``modelreg_artifact_integrity_failures_total``).
Later requests answer 503 until the same content is uploaded again. A ``Range``
request cannot be verified by its range alone: an unverified file is hashed whole
first (once per process), then the range is served; so is a file of one chunk, which
is refused with a 503 before its first byte when it does not match. A verified file is served by
``sendfile``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import IO
from urllib.parse import quote

from flask import Response, request
from werkzeug.wsgi import wrap_file

from modelreg.changes.unit import Change
from modelreg.client.hashing import StreamingSha256
from modelreg.db.session import Database
from modelreg.errors import Unavailable
from modelreg.roles import Caller
from modelreg.runtime.prometheus import INTEGRITY_FAILURES
from modelreg.storage.artifacts import CHUNK, ArtifactStore, sha256_of_file
from modelreg.web.auth import caller
from modelreg.web.common import ctx

log = logging.getLogger(__name__)


def content_disposition(filename: str) -> str:
    """An attachment header that survives any file name (RFC 6266 / 5987).

    >>> print(content_disposition("model.joblib"))
    attachment; filename="model.joblib"
    >>> print(content_disposition('modèle "v2".pkl'))
    attachment; filename="mod_le _v2_.pkl"; filename*=UTF-8''mod%C3%A8le%20%22v2%22.pkl
    """
    ascii_name = "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in filename
    )
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header


def _unavailable(sha256: str, store: ArtifactStore) -> Unavailable:
    if store.is_quarantined(sha256):
        return Unavailable(
            "the stored copy of these bytes failed verification and was quarantined;"
            " register the same content again to repair it",
            {"sha256": sha256, "quarantined": True},
        )
    # A row names these bytes, so the store lost them (a volume not mounted, files
    # removed by hand): the service's fault, and perhaps a passing one.
    return Unavailable(
        "the artifact store does not hold these bytes; check its volume", {"sha256": sha256}
    )


def _open(sha256: str) -> IO[bytes]:
    store = ctx().store
    try:
        return store.open(sha256)
    except FileNotFoundError:
        raise _unavailable(sha256, store) from None


class IntegrityError(Exception):
    """Stored bytes that do not hash to their name: the transfer is cut short."""


def _corrupt(
    db: Database,
    store: ArtifactStore,
    who: Caller,
    fh: IO[bytes],
    sha256: str,
    size: int,
    found: dict[str, object],
) -> None:
    """Quarantine, audit and count one failed verification."""
    quarantined = store.quarantine(sha256, fh)
    INTEGRITY_FAILURES.inc()
    log.error(
        "stored bytes failed verification",
        extra={"sha256": sha256, "found": found, "quarantined_as": quarantined},
    )
    with (
        db.unit_of_work() as session,
        Change(session, who, "artifact.corrupt", f"blobs/{sha256}") as change,
    ):
        change.record(
            before={"sha256": sha256, "size": size}, after={**found, "quarantined_as": quarantined}
        )


def _verify_whole(fh: IO[bytes], sha256: str, size: int) -> dict[str, object] | None:
    """``None`` when the file holds the bytes; what it holds instead otherwise."""
    got, got_size = sha256_of_file(fh)
    fh.seek(0)
    return None if (got, got_size) == (sha256, size) else {"sha256": got, "size": got_size}


def _verifying(
    fh: IO[bytes],
    sha256: str,
    size: int,
    on_corrupt: Callable[[dict[str, object]], None],
    on_verified: Callable[[], None],
) -> Iterator[bytes]:
    """The file's bytes, hashed as they go; the last chunk only once they match."""
    digest = StreamingSha256()
    try:
        remaining = size
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break  # shorter than recorded: caught below
            remaining -= len(chunk)
            digest.update(chunk)
            if remaining > 0:
                yield chunk
                continue
            got = digest.hexdigest()
            if got == sha256 and not fh.read(1):
                on_verified()
                yield chunk
                return
            on_corrupt({"sha256": got})
            raise IntegrityError(f"stored bytes of {sha256} hash to {got}")
        on_corrupt({"size": size - remaining})
        raise IntegrityError(f"stored bytes of {sha256} are shorter than {size} bytes")
    finally:
        digest.close()
        fh.close()


def blob_response(sha256: str, size: int, mimetype: str, filename: str) -> Response:
    """The stored bytes, verified (see the module docstring), streamed, answering
    ``If-None-Match`` (304) and ``Range`` (206, or 416 beyond the end). Content-addressed,
    so immutable."""
    c = ctx()
    store, db, who = c.store, c.db, caller()
    fh = _open(sha256)
    try:
        st = os.fstat(fh.fileno())
        began = time.time_ns()
        verified = (sha256, st) in store.verified

        def corrupt(found: dict[str, object]) -> None:
            _corrupt(db, store, who, fh, sha256, size, found)

        body: object
        if verified or request.method == "HEAD":
            body = wrap_file(request.environ, fh)
        elif st.st_size != size:
            # Known before a byte is sent: refuse now rather than send a wrong length.
            corrupt({"size": st.st_size})
            raise _unavailable(sha256, store)
        elif "Range" in request.headers or size <= CHUNK:
            # A range cannot be verified by itself; a file of one chunk would fail before
            # its first byte, which the server can only answer with a bare 500: both are
            # hashed whole first and refused with a 503 when they do not match.
            found = _verify_whole(fh, sha256, size)
            if found is not None:
                corrupt(found)
                raise _unavailable(sha256, store)
            store.verified.add(sha256, st, began)
            body = wrap_file(request.environ, fh)
        else:

            def verified_now() -> None:
                store.verified.add(sha256, st, began)

            body = _verifying(fh, sha256, size, corrupt, verified_now)
    except BaseException:
        fh.close()
        raise
    response = Response(body, mimetype=mimetype, direct_passthrough=True)  # type: ignore[arg-type]
    response.call_on_close(fh.close)  # also when the body is never read (304, HEAD)
    response.content_length = size
    response.headers["Content-Disposition"] = content_disposition(filename)
    response.cache_control.max_age = 31536000
    response.cache_control.immutable = True
    response.set_etag(sha256)
    response.make_conditional(request, accept_ranges=True, complete_length=size)
    return response
