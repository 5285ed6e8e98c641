"""A ``requests`` adapter that hands each request to a WSGI app in this process.

``Registry(url, token, session=in_process(app, url))`` then drives the real application
with the real client, with no socket and no server thread, on the test's database.
Request bodies, file-like ones included, are read by the app as it parses them;
response bodies stream from the app's iterator, which is closed with the response (as
a WSGI server closes it). An app that fails in the middle of a body raises here,
where a server would drop the connection: what a cut transfer does to the client is
tested over real HTTP (tests/e2e).

Written here rather than taken from ``requests-wsgi-adapter`` (last released in
2019): that one joins the app's whole answer into memory, never closes the app's
iterator, and cannot send a file-like body such as the client's streamed uploads.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from werkzeug.test import EnvironBuilder, run_wsgi_app


class _AppBody(io.RawIOBase):
    """The app's response iterator as a readable file; ``close()`` closes the iterator."""

    def __init__(self, app_iter: Iterable[bytes]) -> None:
        self._app_iter = app_iter
        self._chunks: Iterator[bytes] = iter(app_iter)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                close()
        super().close()


class _Upload(io.RawIOBase):
    """A file-like request body, read as the app asks (``read`` only is enough for
    ``requests``; Werkzeug reads with ``readinto``)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _request_body(body: Any, length: str | None) -> tuple[Any, str]:
    """``wsgi.input`` and ``CONTENT_LENGTH`` for a prepared request's body."""
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        if hasattr(body, "read") and length is not None:
            return _Upload(body), length  # streamed: the app reads it as it parses
        body = b"".join(body)  # chunks, sent chunked: a server would have joined them
    return io.BytesIO(body), str(len(body))


class WSGIAdapter(HTTPAdapter):
    """Sends to ``app`` in this process; timeouts, proxies and certificates do not apply."""

    def __init__(self, app: Any, environ: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.app = app
        self.environ = {"REMOTE_ADDR": "127.0.0.1", **(environ or {})}

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        headers = {k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}
        # The body is the request's own: Werkzeug would encode a multipart one afresh.
        content_type = headers.pop("Content-Type", None)
        length = headers.pop("Content-Length", None)
        environ = EnvironBuilder(
            path=url.path or "/",
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=request.method or "GET",
            headers=list(headers.items()),
            environ_base=self.environ,
        ).get_environ()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = _request_body(request.body, length)
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        app_iter, status, answer = run_wsgi_app(self.app, environ, buffered=False)
        code, _, reason = status.partition(" ")
        raw = urllib3.HTTPResponse(
            body=_AppBody(app_iter),
            headers=urllib3.HTTPHeaderDict(answer.to_wsgi_list()),
            status=int(code),
            reason=reason,
            preload_content=False,
            decode_content=False,
            request_method=request.method,
            request_url=request.url,
        )
        return self.build_response(request, raw)


def in_process(app: Any, url: str) -> requests.Session:
    """A session whose requests to ``url`` go to ``app`` (anything else is refused)."""
    session = requests.Session()
    session.mount("http://", _Refuse())
    session.mount("https://", _Refuse())
    session.mount(url.rstrip("/") + "/", WSGIAdapter(app))
    return session


class _Refuse(HTTPAdapter):
    """Nothing leaves the process: a request elsewhere fails as an unreachable host."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError(f"in-process session: no app at {request.url}")
