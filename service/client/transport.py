"""HTTP plumbing of the client: the session, error mapping, streamed uploads, progress.

A multipart upload is streamed from the file (``requests`` would read ``files=``
into memory), with its length known up front, so a 2 GiB artifact costs no memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from modelreg.client.errors import RegistryError, Unreachable, error_for
from modelreg.client.hashing import StreamingSha256

CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]


class Transport:
    """Sends through ``session`` (a new one when ``None``, closed by :meth:`close`)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        self.base = url.rstrip("/")
        self.api = f"{self.base}/api/v1"
        self.timeout = timeout
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        # Sent with each request rather than set on the session: a session passed in
        # may be shared, and the token must not travel with its other requests.
        self.headers = {"User-Agent": "modelreg-client"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        ok: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send; raise the matching :class:`RegistryError` for any status >= 400.

        Statuses in ``ok`` (e.g. 304) are returned as they are.
        """
        url = path if path.startswith("http") else f"{self.api}{path}"
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.session.request(
                method,
                url,
                json=json_body,
                params=clean,
                headers={**self.headers, **(headers or {})},
                data=data,
                stream=stream,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {self.base}: {exc}") from exc
        if response.status_code >= 400 and response.status_code not in ok:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_for(response.status_code, body)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise RegistryError(
                f"{method} {path}: the answer is not JSON", status=response.status_code
            ) from exc

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following ``next_page_token``."""
        query = dict(params or {})
        while True:
            body = self.json("GET", path, params=query)
            yield from body["items"]
            token = body.get("next_page_token")
            if not token:
                return
            query["page_token"] = token


class MultipartStream(io.RawIOBase):
    """A ``multipart/form-data`` body read from disk as it is sent.

    ``fields`` are small text parts; ``file_field`` is streamed from ``path``.
    """

    def __init__(
        self,
        fields: dict[str, str],
        file_field: str,
        path: Path,
        filename: str,
        progress: Progress | None = None,
    ) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            self._part_header(name) + value.encode() + b"\r\n" for name, value in fields.items()
        )
        head += self._part_header(file_field, filename)
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file: IO[bytes] = path.open("rb")
        self._file_size = path.stat().st_size
        self.length = len(self._head) + self._file_size + len(self._tail)
        self._sent = 0
        self._pending = self._head
        self._stage = 0
        self._progress = progress

    def _part_header(self, name: str, filename: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
            disposition += f'; filename="{safe}"'
            kind = "application/octet-stream"
        else:
            kind = "text/plain; charset=utf-8"
        return (
            f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {kind}\r\n\r\n"
        ).encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Bytes read so far. With ``__len__`` this lets ``requests`` send a
        ``Content-Length`` (``IOBase.tell`` raises, and ``requests`` then counts the
        length as 0 and falls back to a chunked body)."""
        return self._sent

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        out = bytearray()
        while len(out) < want:
            if self._pending:
                take = self._pending[: want - len(out)]
                self._pending = self._pending[len(take) :]
                out += take
                continue
            if self._stage == 0:
                chunk = self._file.read(min(CHUNK, want - len(out)))
                if chunk:
                    out += chunk
                    continue
                self._stage, self._pending = 1, self._tail
                continue
            break
        self._sent += len(out)
        if self._progress is not None:
            self._progress(self._sent, self.length)
        return bytes(out)

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        self._file.close()
        close_progress(self._progress)
        super().close()


def json_part(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


class TerminalProgress:
    """A progress bar on stderr (``rich.progress``), drawn only when stderr is a terminal.

    Called as ``bar(done, total)``. ``unit="bytes"`` shows MB, speed and time left; any
    other unit counts items (``3/12 jobs``). It ends its line once ``done`` reaches
    ``total``, or at :meth:`close` (also on leaving a ``with`` block) when it never does.
    """

    # Redraws at most this often: a 2 GiB upload reports each of its 2,048 chunks.
    REFRESH_SECONDS = 0.1

    def __init__(self, label: str, stream: IO[str] | None = None, unit: str = "bytes") -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar: Any = None  # a started rich Progress
        self._task: Any = None
        self._drawn_at = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if self._bar is None:
            self._start(done, total)
        self._bar.update(self._task, completed=done, total=total)
        now = time.monotonic()
        if done >= total:
            self.close()
        elif now - self._drawn_at >= self.REFRESH_SECONDS:
            self._drawn_at = now
            self._bar.refresh()

    def _start(self, done: int, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        counts = (
            [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
            if self.unit == "bytes"
            else [MofNCompleteColumn(), TextColumn(self.unit), TimeElapsedColumn()]
        )
        self._bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            *counts,
            console=Console(file=self.stream, force_terminal=True, highlight=False),
            # Drawn from __call__ only: no refresh thread, and stdout left alone.
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._bar.add_task(self.label, total=total, completed=done)
        self._bar.start()

    def close(self) -> None:
        """Draw the bar a last time, end its line and show the cursor again."""
        if self._bar is not None:
            bar, self._bar = self._bar, None
            self.enabled = False
            bar.stop()

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_progress(progress: Progress | None) -> None:
    """End a bar :func:`progress_for` made (a caller's own callable is left alone)."""
    if isinstance(progress, TerminalProgress):
        progress.close()


def progress_for(label: str, progress: bool | Progress | None) -> Progress | None:
    """``None``/``True``: a terminal bar (drawn on a TTY only); ``False``: none; a callable."""
    if progress is False:
        return None
    if callable(progress):
        return progress
    return TerminalProgress(label)


def file_size(path: Path) -> int:
    return os.stat(path).st_size


def segment(value: str | int) -> str:
    """One URL path segment: nothing in a name can reach another path."""
    return quote(str(value), safe="")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_verified(
    response: Any, destination: Path, expected: str, progress: bool | Progress | None
) -> Path:
    """Stream a response into ``destination`` via a temporary file; check the sha256."""
    total = int(response.headers.get("Content-Length") or 0)
    report = progress_for(f"downloading {destination.name}", progress)
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = StreamingSha256()
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=destination.parent)
    done = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                for chunk in response.iter_content(CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
                    done += len(chunk)
                    if report is not None:
                        report(done, total or done)
            except requests.RequestException as exc:  # the connection broke mid-body
                raise Unreachable(f"download of {destination.name} cut short: {exc}") from exc
        received = digest.hexdigest()
        if expected and received != expected:
            raise RegistryError(
                f"downloaded bytes have sha256 {received}, expected {expected}",
                code="checksum_mismatch",
            )
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        close_progress(report)
        digest.close()
        response.close()
    return destination
