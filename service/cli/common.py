"""What every HTTP command shares: options, the client, error handling, output.

Every command talking to a server takes ``--url`` (``MODELREG_URL``, default
``http://127.0.0.1:5000``), ``--token`` (``MODELREG_TOKEN``) and ``--json``. API and
network errors end the command with one line on stderr and exit status 1 (a 401 or
403 says which token to pass, and how); click's usage errors exit with 2. Only the
client (``requests``) is imported here, never Flask or SQLAlchemy.
"""

from __future__ import annotations

import functools
import io
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import click

from modelreg.client import Registry, RegistryError, Unreachable
from modelreg.client.resources import Champion, Resource

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
    message = _access_advice(exc) or exc.message
    text = f"{head}: {message}" if head and head != "error" else message
    if exc.status == 422 and exc.details:
        extra = _details(exc.details, exc.message)
        if extra:
            text += f" ({extra})"
    return " ".join(text.split())


def _access_advice(exc: RegistryError) -> str | None:
    """What a 401 or 403 asks of someone at the command line, not of an HTTP client.

    >>> from modelreg.client import Forbidden, Unauthenticated
    >>> _access_advice(Unauthenticated("this API needs a token: send 'Authorization: …'",
    ...     status=401))  # doctest: +NORMALIZE_WHITESPACE
    'no token or a wrong token: set MODELREG_TOKEN or pass --token
     (create one with `modelreg token create` on the server)'
    >>> _access_advice(Unauthenticated("this token has expired", status=401))
    ... # doctest: +ELLIPSIS
    'this token has expired: set MODELREG_TOKEN or pass --token (create one with ...)'
    >>> _access_advice(Forbidden("this needs the 'release' role; the token 'bot' has 'ci'",
    ...     status=403, details={"required": "release", "role": "ci"}))
    ... # doctest: +NORMALIZE_WHITESPACE
    "this needs the 'release' role; the token 'bot' has 'ci': pass a token with the
     'release' role with --token or MODELREG_TOKEN (create one with
     `modelreg token create --name NAME --role release` on the server)"
    """
    if exc.status == 401:
        # The server names the Authorization header; keep only what a person cannot
        # guess: that the token they gave is revoked or expired.
        known = any(word in exc.message for word in ("revoked", "expired"))
        why = exc.message if known else "no token or a wrong token"
        return (
            f"{why}: set MODELREG_TOKEN or pass --token "
            "(create one with `modelreg token create` on the server)"
        )
    required = exc.details.get("required")
    if exc.status == 403 and isinstance(required, str):
        return (
            f"{exc.message}: pass a token with the {required!r} role with --token or "
            f"MODELREG_TOKEN (create one with `modelreg token create --name NAME --role "
            f"{required}` on the server)"
        )
    return None


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
    help="an API token, from `modelreg token create` on the server [env: MODELREG_TOKEN]",
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
    """Columns under a header row, two spaces apart (a rich table, see :func:`render`).

    >>> print(table(["id", "name"], [[1, "AImodel"], [12, None]]))
    id  name
    1   AImodel
    12  -
    >>> print(table(["note"], [["[bold]as typed[/], :smile:"]]))  # no markup, no emoji
    note
    [bold]as typed[/], :smile:
    """
    from rich.table import Table
    from rich.text import Text

    cells = [[cell(v) for v in row] for row in rows]
    columns = [[header, *(row[i] for row in cells)] for i, header in enumerate(headers)]
    room = _terminal_width()
    natural = sum(max(map(len, c)) for c in columns) + 2 * max(len(columns) - 1, 0)
    squeezed = room is not None and natural > room
    grid = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold", highlight=False)
    for header, *values in columns:
        # Too wide for the terminal: rich wraps free text to fit; ids, digests, times and
        # numbers stay whole, their header wrapped to its longest word if need be.
        if not squeezed or any(" " in v for v in values):
            grid.add_column(header, overflow="fold")
        elif len(header) <= max(map(len, values), default=0):
            grid.add_column(header, no_wrap=True)
        else:
            grid.add_column(header, width=_longest_word([header, *values]), overflow="fold")
    for row in cells:
        grid.add_row(*map(Text, row))
    narrowest = sum(map(_longest_word, columns)) + 2 * max(len(columns) - 1, 0)
    return render(grid, narrowest=narrowest)


def _longest_word(texts: Iterable[str]) -> int:
    return max((len(word) for text in texts for word in text.split()), default=1)


def _terminal_width() -> int | None:
    """The width of the terminal stdout is, or None when it is no terminal."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def grid(rows: Iterable[Sequence[Any]], *, keys: bool = False) -> str:
    """Columns without a header row, two spaces apart; ``keys``: the first in bold.

    >>> print(grid([["bwrap", "ok", "/usr/bin/bwrap"], ["userns", "FAIL", None]]))
    bwrap   ok    /usr/bin/bwrap
    userns  FAIL  -
    """
    from rich.table import Table
    from rich.text import Text

    found = [list(row) for row in rows]
    columns = Table.grid(padding=(0, 2))
    for index in range(max((len(r) for r in found), default=0)):
        columns.add_column(style="bold" if keys and index == 0 else None, overflow="fold")
    for row in found:
        columns.add_row(*(Text(cell(v)) for v in row))
    return render(columns)


def pairs(rows: Iterable[tuple[str, Any]]) -> str:
    """A record, one ``key  value`` line per field.

    >>> print(pairs([("model", "AImodel"), ("stage", None)]))
    model  AImodel
    stage  -
    """
    return grid(rows, keys=True)


def render(renderable: Any, narrowest: int = 0) -> str:
    """What ``renderable`` looks like on stdout, without trailing spaces: on a terminal,
    styled and fitted to its width, though never narrower than ``narrowest`` (long cells
    wrap, no word is cut); otherwise (a pipe, a file, tests) plain text, never wrapped,
    without ANSI codes, so that scripts can cut columns."""
    from rich.console import Console

    room = _terminal_width()
    terminal = room is not None
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=terminal,
        width=max(room, narrowest) if room is not None else 1_000_000,
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


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
