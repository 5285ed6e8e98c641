"""What every HTTP command shares: options, the client, error handling, output.

Every command talking to a server takes ``--url`` (``MODELREG_URL``, default
``http://127.0.0.1:5000``), ``--token`` (``MODELREG_TOKEN``) and ``--json``. API and
network errors end the command with one line on stderr and exit status 1; click's
usage errors exit with 2. Only the client (``requests``) is imported here, never
Flask or SQLAlchemy.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import click

from modelreg.client import Registry, RegistryError, Unreachable
from modelreg.client.models import Champion, Resource

DEFAULT_URL = "http://127.0.0.1:5000"
STAGES = ("None", "Staging", "Production", "Archived")


class CliError(click.ClickException):
    """A one-line ``error: …`` on stderr, then exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def notice(text: str) -> None:
    """A line for people on stderr (stdout stays the result, e.g. JSON)."""
    click.echo(f"notice: {text}", err=True)


class InputError(CliError):
    """A file given on the command line is unusable: a usage error, exit status 2."""

    exit_code = 2


def describe(exc: RegistryError) -> str:
    """One line for an API error: ``404 not_found: model 'x' not found``.

    >>> from modelreg.client import ValidationError
    >>> describe(ValidationError("invalid policy", status=422, code="validation_error",
    ...     details={"versions": ["not a specifier"]}))
    '422 validation_error: invalid policy (versions: not a specifier)'
    >>> describe(ValidationError("sha256 must be 64 hexadecimal characters", status=422,
    ...     code="validation_error", details={"sha256": ["must be 64 hexadecimal characters"]}))
    '422 validation_error: sha256 must be 64 hexadecimal characters'
    >>> describe(RegistryError("bytes differ", code="checksum_mismatch"))
    'checksum_mismatch: bytes differ'

    A field whose message the server's message already says is not repeated.
    """
    if isinstance(exc, Unreachable):
        return _unreachable(exc)
    head = f"{exc.status} {exc.code}" if exc.status else exc.code
    text = f"{head}: {exc.message}" if head and head != "error" else exc.message
    if exc.status == 422 and exc.details:
        extra = _details(exc.details, exc.message)
        if extra:
            text += f" ({extra})"
    return " ".join(text.split())


def _details(details: dict[str, Any], said: str) -> str:
    parts = []
    for key, value in details.items():
        shown = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
        if shown.removesuffix(".").lower() not in said.lower():
            parts.append(f"{key}: {shown}")
    return ", ".join(parts)


def _unreachable(exc: Unreachable) -> str:
    """``cannot reach URL: connection refused`` instead of urllib3's paragraph."""
    import requests

    cause = exc.__cause__
    url = exc.message.split(": ", 1)[0].removeprefix("cannot reach ")
    if isinstance(cause, requests.Timeout):
        reason = "timed out"
    else:
        found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(cause))
        reason = found.group(1).strip().lower() if found else type(cause).__name__
    return f"cannot reach {url}: {reason}"


@dataclass
class Api:
    """The command's view of the server, and how it prints."""

    url: str
    token: str | None
    as_json: bool
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.url, self.token)
        return self._registry

    def out(self, document: Any, render: Callable[[], str]) -> None:
        """With ``--json``, ``document`` as JSON (resources as their API documents);
        otherwise what ``render`` returns, for people."""
        if self.as_json:
            click.echo(json.dumps(to_json(document), indent=2))
        else:
            click.echo(render())


def to_json(value: Any) -> Any:
    if isinstance(value, Resource):
        return value.raw
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def items(resources: Iterable[Any]) -> dict[str, Any]:
    """A list as the API shapes it (every page already fetched)."""
    return {"items": [to_json(r) for r in resources]}


url_option = click.option(
    "--url",
    envvar="MODELREG_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="the registry [env: MODELREG_URL]",
)
token_option = click.option(
    "--token",
    envvar="MODELREG_TOKEN",
    default=None,
    metavar="SECRET",
    help="bearer token [env: MODELREG_TOKEN]",
)


def api_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--url``, ``--token``, ``--json``; call ``func(api, …)``; API errors → exit 1."""

    @url_option
    @token_option
    @click.option("--json", "as_json", is_flag=True, help="print the API's JSON documents")
    @functools.wraps(func)
    def wrapper(url: str, token: str | None, as_json: bool, **kwargs: Any) -> Any:
        with api_errors():
            return func(Api(url, token or None, as_json), **kwargs)

    return wrapper


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn client, timeout and file errors into a one-line ``CliError``, never a traceback."""
    try:
        yield
    except RegistryError as exc:
        raise CliError(describe(exc)) from None
    except TimeoutError as exc:
        raise CliError(str(exc) or "timed out") from None
    except OSError as exc:  # a file to read or write (requests' own errors are OSErrors too)
        where = f"{exc.filename}: " if exc.filename else ""
        raise CliError(" ".join(f"{where}{exc.strerror or exc}".split())) from None


# -- parsing -------------------------------------------------------------------------


def parse_pairs(values: Sequence[str], option: str) -> dict[str, Any]:
    """``k=v`` options; a value that parses as JSON is taken as JSON, else as a string.

    >>> parse_pairs(["n_estimators=100", "max_features=sqrt", "frac=0.5", "x=true"], "--param")
    {'n_estimators': 100, 'max_features': 'sqrt', 'frac': 0.5, 'x': True}
    """
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, not {item!r}", param_hint=option)
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def parse_metrics(values: Sequence[str]) -> dict[str, float]:
    """``--metric f1=0.97``: numbers only.

    >>> parse_metrics(["f1=0.97", "accuracy=1"])
    {'f1': 0.97, 'accuracy': 1.0}
    """
    out: dict[str, float] = {}
    for key, value in parse_pairs(values, "--metric").items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise click.BadParameter(f"{key}={value!r} is not a number", param_hint="--metric")
        out[key] = float(value)
    return out


# -- output --------------------------------------------------------------------------


def cell(value: Any) -> str:
    """How one value looks in a table.

    >>> [cell(v) for v in (None, 0.97752808988764, 3, True, ["a", "b"], {"n": 1})]
    ['-', '0.9775', '3', 'yes', 'a, b', 'n=1']
    >>> cell(0.1), cell(0.0), cell(1234.56789)
    ('0.1', '0.0', '1234.5679')
    """
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(round(value, 4))
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):  # params, tags: as given, not rounded
        return " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return " ".join(str(value).split())


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain text columns, aligned, two spaces apart.

    >>> print(table(["id", "name"], [[1, "AImodel"], [12, None]]))
    id  name
    1   AImodel
    12  -
    """
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def pairs(rows: Iterable[tuple[str, Any]]) -> str:
    """A record, one ``key  value`` line per field.

    >>> print(pairs([("model", "AImodel"), ("stage", None)]))
    model  AImodel
    stage  -
    """
    rows = list(rows)
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}".rstrip() for k, v in rows)


def short_sha(sha: str | None) -> str:
    return (sha or "")[:12] or "-"


def champion_line(champion: Champion | dict[str, Any] | None) -> str:
    """``run 5 (AImodel 2.0 #2, f1 0.9775)`` or ``none``.

    >>> champion_line({"run_id": 5, "model": "AImodel", "version": "2.0", "run_number": 2,
    ...                "metric": {"name": "f1", "value": 0.97752}})
    'run 5 (AImodel 2.0 #2, f1 0.9775)'
    >>> champion_line(None)
    'none'
    """
    if champion is None:
        return "none"
    doc = champion.raw if isinstance(champion, Champion) else champion
    metric = doc.get("metric") or {}
    value = metric.get("value")
    measured = f", {metric.get('name')} {cell(value)}" if value is not None else ""
    return (
        f"run {doc.get('run_id')} ({doc.get('model')} {doc.get('version')} "
        f"#{doc.get('run_number')}{measured})"
    )
