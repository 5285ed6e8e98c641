"""Artifact storage: an interface, and a local content-addressed implementation.

Uploads are written to a temporary file inside the store while they are hashed
(memory stays flat whatever the size), checked against the size limit and the
expected digest, and only then renamed into ``sha256/ab/cd/<digest>``. A rename
within one file system is atomic, so a reader never sees half an artifact.

Temporary files are named ``upload-<host>-<pid namespace>-<pid>-<random>``: the
process that writes one is known, so a process killed mid-upload leaves files
that :meth:`LocalArtifactStore.clean_tmp` can tell from the uploads of live
processes, also when replicas on several hosts (or containers) share the store.

Served bytes are verified bytes. A process remembers which files it has seen
hash to their name (:class:`VerifiedFiles`, keyed by device, inode, size, mtime
and ctime: any write, truncation or replacement of the file changes one of them,
and ctime cannot be set back by hand); a file it has not is hashed as it is served
(``modelreg.web.downloads``). A file that does not hash to its name is moved to
``quarantine/`` and is no longer served; uploading the same content again puts
verified bytes back in its place (:meth:`LocalArtifactStore.commit`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from modelreg.client.hashing import StreamingSha256
from modelreg.errors import PayloadTooLarge, ValidationFailed

CHUNK = 1024 * 1024
WRITEBACK_EVERY = 32 * 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# A temporary file untouched for this long is abandoned, whoever wrote it: an upload
# in progress modifies its file with every chunk it receives.
STALE_TMP_SECONDS = 24 * 3600
_TMP_NAME_RE = re.compile(r"^upload-(?P<where>[^-]+-[0-9]+)-(?P<pid>[0-9]+)-[^-]+$")


def _where() -> str:
    """``<host>-<pid namespace>``: where a process id means this process's kind of pid.

    Containers sharing a store may share a host name (host networking) but not
    their process ids; the pid namespace's inode tells them apart.
    """
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{host}-{namespace}"


def tmp_prefix() -> str:
    """``upload-<host>-<pid namespace>-<pid>-``: this process's temporary files."""
    return f"upload-{_where()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows
    # the last ')'.
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    created: bool  # False when identical content was already stored
    # The stored copy did not hold these bytes (changed on disk): the upload replaced it.
    repaired: bool = False


FileKey = tuple[int, int, int, int, int]


def file_key(st: os.stat_result) -> FileKey:
    """What changes whenever a file's bytes may have: device, inode, size, mtime, ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class VerifiedFiles:
    """The stored files this process has seen hash to their name, by :func:`file_key`.

    File times have a coarse clock (a kernel tick; seconds on some network file
    systems), so a write just after a file was stat()ed may leave its times as they
    were: a file is remembered only when its last change (ctime) is at least
    ``TIME_MARGIN_NS`` older than the moment its hashing began. Bounded (least
    recently used out), so a process forgets, and then verifies again, files it has
    not served for a while.
    """

    TIME_MARGIN_NS = 2_000_000_000

    def __init__(self, capacity: int = 4096) -> None:
        self._keys: OrderedDict[tuple[str, FileKey], None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, item: tuple[str, os.stat_result]) -> bool:
        key = (item[0], file_key(item[1]))
        if key not in self._keys:
            return False
        self._keys.move_to_end(key)
        return True

    def add(self, sha256: str, st: os.stat_result, hashing_began_ns: int) -> None:
        """``st`` (taken before hashing began) hashed to ``sha256``."""
        if max(st.st_ctime_ns, st.st_mtime_ns) > hashing_began_ns - self.TIME_MARGIN_NS:
            return  # a change in the same clock tick would not show: verify again next time
        key = (sha256, file_key(st))
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)


def sha256_of_file(fh: IO[bytes]) -> tuple[str, int]:
    """The digest and length of an open file, read from its start."""
    fh.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore(Protocol):
    """Where artifacts live. The local directory is one implementation; an object
    store can take its place by providing the same operations."""

    def begin_upload(self, max_bytes: int) -> IncomingFile: ...

    def commit(self, upload: IncomingFile, expected_sha256: str | None = None) -> StoredBlob: ...

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> IO[bytes]: ...

    def delete(self, sha256: str) -> None: ...

    def quarantine(self, sha256: str, fh: IO[bytes]) -> str | None: ...

    def is_quarantined(self, sha256: str) -> bool: ...

    @property
    def verified(self) -> VerifiedFiles: ...


class IncomingFile:
    """A writable temporary file that hashes and counts what is written to it.

    The multipart parser writes the uploaded part straight into it, so the upload
    is hashed in the same pass that puts it on disk (a large one on a thread of its
    own: :mod:`modelreg.client.hashing`).
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        fd, name = tempfile.mkstemp(prefix=tmp_prefix(), dir=directory)
        self.path = Path(name)
        self._fh: IO[bytes] = os.fdopen(fd, "w+b")
        self._hash = StreamingSha256()
        self._max = max_bytes
        self.size = 0
        self._written_back = 0

    @property
    def sha256(self) -> str:
        """The digest of everything written; no write may follow."""
        return self._hash.hexdigest()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self._max:
            raise PayloadTooLarge(
                f"the uploaded file is larger than the limit of {self._max} bytes",
                {"limit": self._max},
            )
        self._hash.update(data)
        written = self._fh.write(data)
        if self.size - self._written_back >= WRITEBACK_EVERY:
            self._start_writeback()
        return written

    def _start_writeback(self) -> None:
        """Have the kernel start writing the latest window to disk, without waiting.

        The commit's fsync then finds little left to write: on a 1 GiB upload it
        took 0.41 s when everything was still dirty, 0.015 s with this.
        POSIX_FADV_DONTNEED starts writeback of the range's dirty pages and drops
        its clean ones (the window before, written back meanwhile), so a large
        upload does not push what readers use out of the page cache either.
        """
        self._fh.flush()
        start = max(0, self._written_back - WRITEBACK_EVERY)
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no fadvise
            os.posix_fadvise(self._fh.fileno(), start, self.size - start, os.POSIX_FADV_DONTNEED)
        self._written_back = self.size

    # The parser treats this object as a file; these keep it satisfied.
    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def discard(self) -> None:
        self._hash.close()  # no thread outlives its upload
        self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class LocalArtifactStore:
    """Content-addressed files under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = root / "quarantine"
        self._verified = VerifiedFiles()

    @property
    def verified(self) -> VerifiedFiles:
        return self._verified

    def path_for(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            # Digests come from our own rows; anything else must never touch a path.
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def begin_upload(self, max_bytes: int) -> IncomingFile:
        return IncomingFile(self.tmp, max_bytes)

    def commit(self, upload: IncomingFile, expected_sha256: str | None = None) -> StoredBlob:
        """Move a complete upload into place, or discard it and raise."""
        try:
            upload.flush()
            os.fsync(upload._fh.fileno())
            upload.close()
            digest = upload.sha256
            if expected_sha256 is not None and expected_sha256.lower() != digest:
                raise ValidationFailed(
                    "artifact sha256 does not match expected_sha256",
                    {"expected_sha256": [f"expected {expected_sha256}, received {digest}"]},
                )
            target = self.path_for(digest)
            existed = target.exists()
            quarantined = not existed and self.is_quarantined(digest)
            if existed and self._holds(target, digest, upload.size):
                upload.discard()
                return StoredBlob(digest, upload.size, created=False)
            # Missing, or changed on disk: the upload's verified bytes take its place
            # (a rename over it: readers see the old file or the new one, never a mix).
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(upload.path, target)
            # The rename must be durable before a row can point at its result.
            _fsync_dir(target.parent)
            return StoredBlob(
                digest, upload.size, created=not existed, repaired=existed or quarantined
            )
        except BaseException:
            upload.discard()
            raise

    def _holds(self, target: Path, sha256: str, size: int) -> bool:
        """Whether the stored file holds these bytes: its size, then (unless this
        process verified it as it is now) its hash. Reads the file once."""
        try:
            with target.open("rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_size != size:
                    return False
                if (sha256, st) in self._verified:
                    return True
                began = time.time_ns()
                if sha256_of_file(fh) != (sha256, size):
                    return False
                self._verified.add(sha256, st, began)
                return True
        except FileNotFoundError:
            return False

    def quarantine(self, sha256: str, fh: IO[bytes]) -> str | None:
        """Move the stored file, if it is still the one open as ``fh``, aside into
        ``quarantine/``; its name there, or ``None`` when another process did (or a
        repair replaced it) first."""
        target = self.path_for(sha256)
        try:
            if not os.path.samestat(os.fstat(fh.fileno()), target.stat()):
                return None
        except FileNotFoundError:
            return None
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        name = f"{sha256}.{time.time_ns()}"
        try:
            os.replace(target, self.quarantine_dir / name)
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            _fsync_dir(target.parent)
        return name

    def is_quarantined(self, sha256: str) -> bool:
        """Whether a copy of this blob failed verification (and no good one is back)."""
        if not self.quarantine_dir.is_dir() or self.exists(sha256):
            return False
        return any(self.quarantine_dir.glob(f"{self.path_for(sha256).name}.*"))

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def clean_tmp(self, *, stale_after: float = STALE_TMP_SECONDS) -> list[Path]:
        """Remove abandoned temporary files; returns what was removed.

        Abandoned: written by a process of this host and pid namespace that is
        gone (killed in the middle of an upload), or not modified for
        ``stale_after`` seconds (a process elsewhere that crashed, or a name of
        another form). Uploads of live processes, here or elsewhere, are kept.
        """
        where, now, removed = _where(), time.time(), []
        for path in self.tmp.iterdir():
            match = _TMP_NAME_RE.match(path.name)
            try:
                if not path.is_file():
                    continue
                orphan = (
                    match is not None
                    and match["where"] == where
                    and not _pid_alive(int(match["pid"]))
                )
                if orphan or now - path.stat().st_mtime > stale_after:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # committed or discarded meanwhile
        return removed

    def open(self, sha256: str) -> IO[bytes]:
        return self.path_for(sha256).open("rb")

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(sha256).unlink()
