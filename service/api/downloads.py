"""Streamed, content-addressed downloads: a run's artifact, a dataset revision's content."""

from __future__ import annotations

from typing import IO
from urllib.parse import quote

from flask import Response, request
from werkzeug.wsgi import wrap_file

from service.api.common import ctx
from service.errors import Unavailable


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


def _open(sha256: str) -> IO[bytes]:
    try:
        return ctx().store.open(sha256)
    except FileNotFoundError:
        # A row names these bytes, so the store lost them (a volume not mounted, files
        # removed by hand): the service's fault, and perhaps a passing one.
        raise Unavailable(
            "the artifact store does not hold these bytes; check its volume",
            {"sha256": sha256},
        ) from None


def blob_response(sha256: str, size: int, mimetype: str, filename: str) -> Response:
    """The stored bytes, streamed (sendfile under gunicorn), answering ``If-None-Match``
    (304) and ``Range`` (206, or 416 beyond the end). Content-addressed, so immutable."""
    response = Response(
        wrap_file(request.environ, _open(sha256)), mimetype=mimetype, direct_passthrough=True
    )
    response.content_length = size
    response.headers["Content-Disposition"] = content_disposition(filename)
    response.cache_control.max_age = 31536000
    response.cache_control.immutable = True
    response.set_etag(sha256)
    response.make_conditional(request, accept_ranges=True, complete_length=size)
    return response
