"""Settings: defaults from ``config/defaults.toml``, overridden by ``MODELREG_*``.

Order of precedence, lowest first: the packaged defaults, a TOML file named by
``MODELREG_CONFIG``, ``MODELREG_<KEY>`` environment variables, then keyword
overrides given to :func:`load_settings` (tests and the CLI use those).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from service.errors import ConfigError

ENV_PREFIX = "MODELREG_"


def _defaults_file() -> Path:
    # Installed wheels carry the file inside the package; a source checkout reads
    # config/ directly, so there is one copy of the defaults either way.
    packaged = Path(__file__).with_name("defaults.toml")
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "config" / "defaults.toml"


@dataclass(frozen=True)
class Settings:
    data_dir: str
    database_url: str
    artifact_root: str
    max_artifact_bytes: int
    max_json_bytes: int
    default_page_size: int
    max_page_size: int
    host: str
    port: int
    workers: int
    threads: int
    access_log: bool

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'modelreg.db'}"

    @property
    def resolved_artifact_root(self) -> Path:
        if self.artifact_root:
            return Path(self.artifact_root).resolve()
        return Path(self.data_dir).resolve() / "artifacts"

    @property
    def is_embedded(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


_BOOLEANS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _coerce(name: str, raw: Any, kind: type) -> Any:
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    if kind is int and isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    if kind is str and isinstance(raw, str):
        return raw
    if kind is bool and isinstance(raw, str) and raw.strip().lower() in _BOOLEANS:
        return _BOOLEANS[raw.strip().lower()]
    raise ConfigError(f"setting {name!r} must be {kind.__name__}, got {raw!r}")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings for this process (see the module docstring for precedence)."""
    env = os.environ if environ is None else environ
    with _defaults_file().open("rb") as fh:
        values: dict[str, Any] = tomllib.load(fh)
    extra = env.get(f"{ENV_PREFIX}CONFIG")
    if extra:
        try:
            with Path(extra).open("rb") as fh:
                values.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {ENV_PREFIX}CONFIG={extra}: {exc}") from exc
    kinds = {f.name: f.type for f in fields(Settings)}
    unknown = (set(values) | set(overrides)) - set(kinds)
    if unknown:
        raise ConfigError(f"unknown setting(s): {sorted(unknown)}")
    for name in kinds:
        if f"{ENV_PREFIX}{name.upper()}" in env:
            values[name] = env[f"{ENV_PREFIX}{name.upper()}"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    pytypes = {"str": str, "int": int, "bool": bool}
    return Settings(
        **{name: _coerce(name, values[name], pytypes[str(kinds[name])]) for name in kinds}
    )
