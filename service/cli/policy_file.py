"""Policy as code: a TOML file of the policies wanted, checked and compared with the stored ones.

One table per environment and model; the file states each listed policy in full (a
key left out takes its default, not the stored value)::

    [environments.PROD]
    description = "production"          # optional

    [environments.PROD.AImodel]
    versions = "<=1.0"                  # PEP 440 specifier set; "" or absent: any version
    stages = ["Production"]             # required
    metric = "f1"                       # required
    dataset = "wine-holdout"            # required; a name means its latest revision, name@3 pins

Optional keys: ``direction`` ("max"/"min"; default from the metric), ``min_value``,
``min_improvement`` (0), ``allow_prereleases`` (false); ``require_verified`` and ``formats``
left out are left to the server (true on a revision with content; its allowed_formats).
Values are checked here with the very ``policies.Policy`` the server uses, so the
comparison with a stored policy sees canonical specifiers, stage order and directions.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelreg.policies import Policy, PolicyError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DATASET = re.compile(rf"(?P<name>{NAME.pattern})(?:@(?P<rev>[1-9][0-9]*))?")
REQUIRED = ("stages", "metric", "dataset")
DEFAULTS: dict[str, Any] = {
    "versions": "",
    "direction": None,
    "min_value": None,
    "min_improvement": 0.0,
    "allow_prereleases": False,
    # None: left to the server (require_verified: true on a revision with content;
    # formats: the server's allowed_formats), and not compared with what is stored.
    "require_verified": None,
    "formats": None,
}
# The fields of a policy body, in the order they are shown.
FIELDS = (
    "versions",
    "stages",
    "metric",
    "dataset",
    "direction",
    "min_value",
    "min_improvement",
    "allow_prereleases",
    "require_verified",
    "formats",
)


class PolicyFileError(ValueError):
    """The file cannot be read, is not TOML, or does not have the expected shape."""


@dataclass(frozen=True)
class Wanted:
    """One policy of the file: every field (defaults filled in), the dataset as written."""

    environment: str
    model: str
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.environment}/{self.model}"


@dataclass(frozen=True)
class PolicyFile:
    descriptions: dict[str, str]
    policies: tuple[Wanted, ...]


def load(path: Path) -> PolicyFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{path}: cannot read it: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(document)
    except PolicyFileError as exc:
        raise PolicyFileError(f"{path}: {exc}") from None


def parse(document: dict[str, Any]) -> PolicyFile:
    """Check the shape and every value of a parsed file.

    >>> doc = {"environments": {"PROD": {"AImodel": {"versions": "<= 1.0",
    ...        "stages": ["Production"], "metric": "f1", "dataset": "wine-holdout"}}}}
    >>> parse(doc).policies[0].body["versions"], parse(doc).policies[0].body["direction"]
    ('<=1.0', 'max')
    >>> try:
    ...     parse({"environments": {"PROD": {"AImodel": {"metric": "f1", "stage": "x"}}}})
    ... except PolicyFileError as exc:
    ...     print(str(exc)[:56])
    [environments.PROD.AImodel]: unknown key 'stage' (known:
    """
    unknown = sorted(set(document) - {"environments"})
    if unknown:
        raise PolicyFileError(f"unknown top-level key(s) {unknown}: only [environments.…] tables")
    environments = document.get("environments")
    if not isinstance(environments, dict) or not environments:
        raise PolicyFileError("no [environments.<ENV>.<MODEL>] table")
    descriptions: dict[str, str] = {}
    wanted: list[Wanted] = []
    seen: set[tuple[str, str]] = set()
    for env, tables in environments.items():
        where = f"[environments.{env}]"
        _check_name(env, where, "environment")
        if not isinstance(tables, dict):
            raise PolicyFileError(f"{where}: must be a table of models")
        for model, body in tables.items():
            if model == "description":
                if not isinstance(body, str):
                    raise PolicyFileError(f"{where}: description must be a string")
                descriptions[env] = body
                continue
            where = f"[environments.{env}.{model}]"
            _check_name(model, where, "model")
            if not isinstance(body, dict):
                raise PolicyFileError(f"{where}: must be a table of policy fields")
            if (env.lower(), model.lower()) in seen:  # names are case-insensitive
                raise PolicyFileError(f"{where}: listed twice")
            seen.add((env.lower(), model.lower()))
            wanted.append(Wanted(env, model, _body(body, where)))
    if not wanted:
        raise PolicyFileError("no [environments.<ENV>.<MODEL>] table")
    return PolicyFile(descriptions, tuple(wanted))


def _check_name(name: str, where: str, what: str) -> None:
    if not NAME.fullmatch(name):
        raise PolicyFileError(f"{where}: {name!r} is not a valid {what} name")


def _body(raw: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise PolicyFileError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise PolicyFileError(f"{where}: missing {', '.join(missing)}")
    body = {**DEFAULTS, **raw}
    checks: dict[str, Callable[[Any], bool]] = {
        "versions": lambda v: isinstance(v, str),
        "stages": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "metric": lambda v: isinstance(v, str),
        "dataset": lambda v: isinstance(v, str) and DATASET.fullmatch(v) is not None,
        "direction": lambda v: v is None or v in ("max", "min"),
        "min_value": lambda v: v is None or _is_number(v),
        "min_improvement": _is_number,
        "allow_prereleases": lambda v: isinstance(v, bool),
        "require_verified": lambda v: v is None or isinstance(v, bool),
        "formats": lambda v: (
            v is None or (isinstance(v, list) and all(isinstance(f, str) for f in v))
        ),
    }
    expected = {
        "versions": "a string",
        "stages": "a list of stages",
        "metric": "a string",
        "dataset": "a dataset name, or name@revision",
        "direction": '"max" or "min"',
        "min_value": "a number",
        "min_improvement": "a number",
        "allow_prereleases": "true or false",
        "require_verified": "true or false",
        "formats": 'a list of artifact formats, e.g. ["skops", "onnx"]',
    }
    for key, check in checks.items():
        if not check(body[key]):
            raise PolicyFileError(f"{where}: {key} must be {expected[key]}, not {body[key]!r}")
    # Values are checked as the server checks them; the dataset label comes later.
    return normalized(body, "placeholder@1", where) | {"dataset": body["dataset"]}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normalized(body: dict[str, Any], dataset_label: str, where: str = "") -> dict[str, Any]:
    """``body`` in the server's canonical form, naming ``dataset_label``.

    >>> normalized({"versions": ">=0.5,<=1.0", "stages": ["Production", "Staging"],
    ...             "metric": "rmse", "dataset": "x"}, "x@2")["stages"]
    ['Staging', 'Production']
    """
    try:
        policy = Policy(
            versions=body.get("versions", ""),
            stages=tuple(body["stages"]),
            metric=body["metric"],
            dataset=dataset_label,
            direction=body.get("direction"),
            min_value=_float(body.get("min_value")),
            min_improvement=float(body.get("min_improvement", 0.0)),
            allow_prereleases=body.get("allow_prereleases", False),
            require_verified=bool(body.get("require_verified")),
            formats=tuple(body.get("formats") or ()),
        )
    except PolicyError as exc:
        raise PolicyFileError(
            f"{where + ': ' if where else ''}{exc.field}: {exc.message}"
        ) from None
    return {
        "versions": policy.versions,
        "stages": list(policy.stages),
        "metric": policy.metric,
        "dataset": policy.dataset,
        "direction": policy.direction,
        "min_value": policy.min_value,
        "min_improvement": policy.min_improvement,
        "allow_prereleases": policy.allow_prereleases,
        **(
            {}
            if body.get("require_verified") is None
            else {"require_verified": policy.require_verified}
        ),
        **({} if body.get("formats") is None else {"formats": list(policy.formats)}),
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def diff(current: dict[str, Any] | None, wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields that differ, as ``(stored, wanted)``; every field when nothing is stored.

    >>> diff({"versions": "<=1.0", "stages": ["Production"]},
    ...      {"versions": "<=2.0", "stages": ["Production"]})
    {'versions': ('<=1.0', '<=2.0')}
    """
    out = {}
    for key in FIELDS:
        if key not in wanted:
            continue
        old = None if current is None else current.get(key)
        if current is None or old != wanted[key]:
            out[key] = (old, wanted[key])
    return out


def shown(value: Any) -> str:
    """A value as the diff shows it: JSON, so "" and null are visible.

    >>> shown(""), shown(["Staging", "Production"]), shown(None)
    ('""', '["Staging", "Production"]', 'null')
    """
    return json.dumps(value)
