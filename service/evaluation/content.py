"""The content of a dataset revision: a CSV file, plain or gzip'd, with a header row.

``inspect`` validates an upload before it is stored; ``load_xy`` reads stored
content for an evaluation. Both read through :func:`_read_csv` with the same
pandas options, so what was validated is exactly what is evaluated.

pandas is imported inside the functions: the web process only pays for it on
the first upload, and the evaluation worker imports it in its child process.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg.errors import PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:  # pragma: no cover
    import pandas

TASKS = ("classification", "regression")
FORMATS = ("csv", "csv.gz")
GZIP_MAGIC = b"\x1f\x8b"
# Rows parsed at a time while inspecting: about this many cells per chunk keeps the
# web process's memory flat whatever the file's size.
_CELLS_PER_CHUNK = 1_000_000
_SHOWN_COLUMNS = 20


@dataclass(frozen=True)
class ContentInfo:
    format: str  # "csv" or "csv.gz"
    row_count: int
    columns: list[str]  # header order, target included


def format_of(head: bytes) -> str:
    """The content format from the first bytes: gzip's magic number, else plain CSV.

    >>> format_of(b"\\x1f\\x8b\\x08\\x00"), format_of(b"a,b\\n"), format_of(b"")
    ('csv.gz', 'csv', 'csv')
    """
    return "csv.gz" if head.startswith(GZIP_MAGIC) else "csv"


def detect_format(path: Path) -> str:
    """``csv.gz`` when the file starts with gzip's magic bytes, else ``csv``.

    >>> import tempfile, gzip
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plain, packed = Path(tmp) / "a", Path(tmp) / "b"
    ...     _ = plain.write_bytes(b"x,y\\n1,2\\n")
    ...     _ = packed.write_bytes(gzip.compress(b"x,y\\n1,2\\n"))
    ...     detect_format(plain), detect_format(packed)
    ('csv', 'csv.gz')
    """
    with path.open("rb") as fh:
        return format_of(fh.read(len(GZIP_MAGIC)))


def file_extension(content_format: str) -> str:
    """The file name extension of a format, for downloads.

    >>> file_extension("csv"), file_extension("csv.gz")
    ('.csv', '.csv.gz')
    """
    return f".{content_format}"


def media_type(content_format: str) -> str:
    """
    >>> media_type("csv"), media_type("csv.gz")
    ('text/csv', 'application/gzip')
    """
    return "application/gzip" if content_format == "csv.gz" else "text/csv"


def _options(content_format: str) -> dict[str, Any]:
    """The one set of ``pandas.read_csv`` options for content (validation and evaluation).

    Comma-separated, UTF-8 (a BOM is ignored), a header row; no column becomes the
    index (a data row with more fields than the header is an error, see ``_header``);
    pandas' default missing-value markers (empty, ``NA``, ``NaN``, ``null``, …).
    """
    if content_format not in FORMATS:
        raise ValueError(f"unknown dataset content format: {content_format!r}")
    return {
        "sep": ",",
        "encoding": "utf-8",
        "encoding_errors": "strict",
        "compression": "gzip" if content_format == "csv.gz" else None,
        "engine": "c",
        "index_col": False,
        "on_bad_lines": "error",
    }


def _header(path: Path, content_format: str) -> list[str]:
    """The header row as written, read together with the first data row.

    Reading both with no header makes the parser refuse a first data row with more
    fields than the header, which it would otherwise silently turn into an index
    or truncate.
    """
    import pandas as pd

    options = _options(content_format) | {
        "header": None,
        "nrows": 2,
        "dtype": str,
        "keep_default_na": False,
    }
    head = pd.read_csv(path, **options)
    if len(head) == 0:  # pragma: no cover - pandas raises EmptyDataError first
        raise _file_error("the file is empty: expected a header row and data rows")
    names = [str(name) for name in head.iloc[0].tolist()]
    seen: dict[str, int] = {}
    for index, name in enumerate(names, 1):
        if name and name in seen:
            raise _file_error(
                f"duplicate column name {_short(name)!r} (columns {seen[name]} and {index})"
            )
        seen.setdefault(name, index)
    return names


def _read_csv(
    path: Path, content_format: str, *, nrows: int | None = None, chunksize: int | None = None
) -> Any:
    """``pandas.read_csv`` with the content options: a DataFrame, or chunks of one."""
    import pandas as pd

    extra: dict[str, Any] = {"header": 0, "nrows": nrows}
    if chunksize is None:
        # One pass, one type per column (no per-block inference).
        extra["low_memory"] = False
    else:
        extra["chunksize"] = chunksize
    return pd.read_csv(path, **_options(content_format), **extra)


def inspect(
    path: Path,
    target: str,
    task: str,
    *,
    max_rows: int,
    max_columns: int,
    max_bytes: int | None = None,
) -> ContentInfo:
    """Validate a dataset file and describe it; raises :class:`ValidationFailed`.

    Details are keyed ``file`` (what is wrong with the content) or ``target``
    (the target column is not in the file). At most ``max_rows + 1`` data rows
    are parsed, in chunks. Gzip'd content larger than ``max_bytes`` once
    decompressed is refused (:class:`PayloadTooLarge`) before pandas reads it.
    """
    if task not in TASKS:
        raise ValidationFailed.field("task", f"must be one of {', '.join(TASKS)}")
    content_format = detect_format(path)
    with _readable(content_format):
        if content_format == "csv.gz" and max_bytes is not None:
            _check_decompressed_size(path, max_bytes)
        header = _header(path, content_format)
        if len(header) > max_columns:
            raise _file_error(
                f"the file has {len(header)} columns; at most {max_columns} are allowed"
            )
        chunks = _read_csv(
            path,
            content_format,
            nrows=max_rows + 1,
            chunksize=max(1, _CELLS_PER_CHUNK // max(1, len(header))),
        )
        labels = _Labels(target, task)
        columns: list[str] | None = None
        for chunk in chunks:
            if columns is None:
                columns = [str(c) for c in chunk.columns]
                _check_target(target, columns)
            labels.add(chunk[target])
            if labels.rows > max_rows:
                raise _file_error(f"the file has more than {max_rows} data rows")
    if columns is None or labels.rows == 0:
        raise _file_error("the file has a header but no data rows")
    if len(columns) < 2:
        raise _file_error(f"the file has no feature columns besides the target {target!r}")
    labels.check()
    return ContentInfo(format=content_format, row_count=labels.rows, columns=columns)


def load_xy(path: Path, content_format: str, target: str) -> tuple[pandas.DataFrame, pandas.Series]:
    """The features (every column but ``target``) and the labels, read as ``inspect`` did."""
    with _readable(content_format):
        _header(path, content_format)
        frame = _read_csv(path, content_format)
    _check_target(target, [str(c) for c in frame.columns])
    return frame.drop(columns=[target]), frame[target]


def _check_decompressed_size(path: Path, max_bytes: int) -> None:
    """A small gzip file can hold a huge CSV: count what it expands to, in a stream."""
    total = 0
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(
                    f"the file expands to more than {max_bytes} bytes once decompressed",
                    {"limit": max_bytes},
                )


class _Labels:
    """Checks of the target column, accumulated over chunks."""

    def __init__(self, target: str, task: str) -> None:
        self.target = target
        self.task = task
        self.rows = 0
        self.missing = 0
        self.first_missing: int | None = None
        self.infinite = 0
        self.first_not_numeric: tuple[int, str] | None = None

    def add(self, column: pandas.Series) -> None:
        import numpy as np
        import pandas as pd

        missing = column.isna().to_numpy()
        if missing.any():
            if self.first_missing is None:
                self.first_missing = self.rows + int(missing.argmax()) + 1
            self.missing += int(missing.sum())
        if self.task == "regression" and self.first_not_numeric is None:
            numeric = pd.api.types.is_numeric_dtype(column) and not (
                pd.api.types.is_bool_dtype(column)
            )
            if numeric:
                self.infinite += int(np.isinf(column.to_numpy(dtype=float)).sum())
            else:
                coerced = pd.to_numeric(column, errors="coerce").isna().to_numpy() & ~missing
                bad = int(coerced.argmax()) if coerced.any() else 0
                self.first_not_numeric = (self.rows + bad + 1, str(column.iloc[bad]))
        self.rows += len(column)

    def check(self) -> None:
        name = repr(self.target)
        if self.missing:
            raise _file_error(
                f"target column {name} has {self.missing} empty or NaN label"
                f"{'s' if self.missing > 1 else ''}; the first is in data row {self.first_missing}"
            )
        if self.first_not_numeric is not None:
            row, value = self.first_not_numeric
            raise _file_error(
                f"target column {name} must be numeric for a regression task; "
                f"data row {row} holds {_short(value)!r}"
            )
        if self.infinite:
            raise _file_error(
                f"target column {name} has {self.infinite} infinite value"
                f"{'s' if self.infinite > 1 else ''}; regression labels must be finite"
            )


def _check_target(target: str, columns: list[str]) -> None:
    if target in columns:
        return
    shown = ", ".join(repr(_short(c)) for c in columns[:_SHOWN_COLUMNS])
    more = f", … ({len(columns)} columns)" if len(columns) > _SHOWN_COLUMNS else ""
    raise ValidationFailed.field(
        "target", f"column {_short(target)!r} is not in the file; its columns are {shown}{more}"
    )


@contextmanager
def _readable(content_format: str) -> Iterator[None]:
    """Turns the ways a file can fail to parse into a 422 on ``file``."""
    try:
        yield
    except (ValidationFailed, PayloadTooLarge):
        raise
    except Exception as exc:
        message = _parse_failure(exc, content_format)
        if message is None:
            raise
        raise _file_error(message) from exc


def _parse_failure(exc: BaseException, content_format: str) -> str | None:
    """What a parse failure means for the client, or None for failures that are ours."""
    import pandas as pd

    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.start + 1]
        return f"the file is not UTF-8 text (cannot decode byte 0x{bad.hex()})"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the file is empty: expected a header row and data rows"
    if isinstance(exc, pd.errors.ParserError):
        detail = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
        return f"the file is not a readable CSV: {detail}"
    if content_format == "csv.gz" and isinstance(exc, EOFError | OSError | zlib.error):
        return f"the file starts like gzip but is not a valid gzip stream: {exc}"
    if isinstance(exc, ValueError):
        return f"the file is not a readable CSV: {exc}"
    return None


def _file_error(message: str) -> ValidationFailed:
    return ValidationFailed.field("file", message)


def _short(text: str, limit: int = 60) -> str:
    """
    >>> _short("abc"), _short("x" * 70, 10)
    ('abc', 'xxxxxxxxx…')
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"
