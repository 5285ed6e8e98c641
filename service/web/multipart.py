"""``multipart/form-data`` bodies parsed by python-multipart instead of Werkzeug.

Werkzeug's parser is fastest with 64 KiB reads, and at that size the layers
under it (gunicorn's body reader, Werkzeug's own buffer) copy each byte a dozen
times: a 1 GiB upload reached ~200 MiB/s. python-multipart takes 1 MiB reads
and reports a part's bytes as offsets into them, so a file part reaches the
artifact store's :class:`~modelreg.storage.artifacts.IncomingFile` with about one copy
(``bench/upload.py``, docs/benchmarks.md).

Everything else keeps Werkzeug's meaning: the request's ``form`` and ``files``,
``FileStorage`` objects over the streams its ``stream_factory`` makes, part
headers read as UTF-8, text parts decoded by their charset, and
``max_form_memory_size`` and ``max_form_parts`` (413). Two differences: a
malformed body is a 400 saying what is wrong (Werkzeug reads it as an empty form,
and the route then asks for a part the client did send); and a part must have a
body, even an empty one — ``CRLF CRLF`` after its headers, then the delimiter, as
every HTTP client sends it. A part with headers only, which RFC 2046 allows and
Werkzeug's test client sends for an empty file, reads as a body without its
closing boundary (400).
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from python_multipart.multipart import MultipartParser
from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Reads at least as large as gunicorn's largest recv(), or it copies what is left over
# on every read (docs/benchmarks.md, upload.py).
READ_SIZE = 1024 * 1024
# Charsets a text part may declare (Werkzeug's list); anything else is read as UTF-8.
_CHARSETS = {"ascii", "us-ascii", "utf-8", "iso-8859-1"}


class _Part:
    def __init__(
        self,
        headers: Headers,
        name: str,
        filename: str | None,
        container: IO[bytes] | list[bytes],
    ) -> None:
        self.headers = headers
        self.name = name
        self.filename = filename
        self.container = container
        self.size = 0


class _Collector:
    """The parser's callbacks: headers, then each part's bytes into its container."""

    def __init__(self, form_parser: FormDataParser, content_length: int | None) -> None:
        self.form_parser = form_parser
        self.content_length = content_length
        self.fields: list[tuple[str, str]] = []
        self.files: list[tuple[str, FileStorage]] = []
        self.parts = 0
        self.ended = False
        self._header_items: list[tuple[str, str]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._part: _Part | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        limit = self.form_parser.max_form_parts
        if limit is not None and self.parts > limit:
            raise RequestEntityTooLarge()
        self._header_items = []

    def header_end(self) -> None:
        # UTF-8, as Werkzeug reads them: browsers send file names that way. Bytes that
        # are not UTF-8 make the body malformed (UnicodeDecodeError is a ValueError).
        name, value = self._field.decode(), self._value.decode()
        self._header_items.append((name.strip(" \t"), value.strip(" \t")))
        self._field.clear()
        self._value.clear()

    def headers_finished(self) -> None:
        headers = Headers(self._header_items)
        disposition, options = parse_options_header(headers.get("content-disposition"))
        if disposition != "form-data" or "name" not in options:
            raise ValueError("a part without a Content-Disposition: form-data name")
        container: IO[bytes] | list[bytes]
        if "filename" in options:
            container = self.form_parser.stream_factory(
                total_content_length=self.content_length,
                filename=options["filename"],
                content_type=headers.get("content-type"),
                content_length=0,
            )
        else:
            container = []
        self._part = _Part(headers, options["name"], options.get("filename"), container)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:
            raise ValueError("part data before the part's headers")
        chunk = data if start == 0 and end == len(data) else data[start:end]
        if isinstance(part.container, list):
            part.size += len(chunk)
            limit = self.form_parser.max_form_memory_size
            if limit is not None and part.size > limit:
                raise RequestEntityTooLarge()
            part.container.append(chunk)
        else:
            part.container.write(chunk)

    def part_end(self) -> None:
        part, self._part = self._part, None
        if part is None:
            raise ValueError("a part ended before its headers")
        if isinstance(part.container, list):
            _, ct_options = parse_options_header(part.headers.get("content-type"))
            charset = ct_options.get("charset", "").lower()
            value = b"".join(part.container).decode(
                charset if charset in _CHARSETS else "utf-8", "replace"
            )
            self.fields.append((part.name, value))
        else:
            part.container.seek(0)
            storage = FileStorage(part.container, part.filename, part.name, headers=part.headers)
            self.files.append((part.name, storage))

    def end(self) -> None:
        self.ended = True


class FastFormDataParser(FormDataParser):
    """Werkzeug's form parser with python-multipart for ``multipart/form-data``."""

    def _parse_multipart(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[IO[bytes], MultiDict[str, Any], MultiDict[str, Any]]:
        boundary = options.get("boundary", "").encode("latin-1")
        if not boundary:
            raise ValueError("Missing boundary")
        collector = _Collector(self, content_length)
        try:
            parser = MultipartParser(boundary, collector.callbacks())
            while data := stream.read(READ_SIZE):
                parser.write(data)
            parser.finalize()
            if not collector.ended:
                raise ValueError("the body ended before its closing boundary")
        except ValueError as exc:
            # Werkzeug would read the body as an empty form and the route would then
            # ask for a part the client did send; saying what is wrong helps more.
            raise BadRequest(f"malformed multipart/form-data body: {exc}") from exc
        return stream, self.cls(collector.fields), self.cls(collector.files)
