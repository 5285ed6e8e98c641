"""Settings: ``config/defaults.toml`` (``modelreg.defaults``), overridden by ``MODELREG_*``.

Order of precedence, lowest first: the packaged defaults, a TOML file named by
``MODELREG_CONFIG``, ``MODELREG_<KEY>`` environment variables, then keyword
overrides given to :func:`load_settings` (tests and the CLI use those).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from modelreg.errors import ConfigError
from modelreg.names import NAME_LEN

ENV_PREFIX = "MODELREG_"


def _defaults_file() -> Traversable:
    # config/ installs as the data package modelreg.defaults (pyproject.toml): one
    # copy of the defaults, in a wheel and in an editable install alike.
    return resources.files("modelreg.defaults").joinpath("defaults.toml")


@dataclass(frozen=True)
class Settings:
    data_dir: str
    database_url: str
    artifact_root: str
    max_artifact_bytes: int
    max_json_bytes: int
    default_page_size: int
    max_page_size: int
    max_name_length: int
    max_metrics_per_evaluation: int
    max_evaluations_per_run: int
    host: str
    port: int
    workers: int
    threads: int
    access_log: bool
    max_dataset_bytes: int
    max_dataset_rows: int
    max_dataset_columns: int
    evaluation_timeout: int
    evaluation_cpu_seconds: int
    evaluation_memory_mb: int
    evaluation_isolation: str
    evaluation_bwrap: str
    evaluation_cgroup: str
    evaluation_scratch_mb: int
    evaluation_max_processes: int
    evaluation_open_files: int
    job_lease_seconds: int
    job_max_attempts: int
    worker_poll_ms: int
    settle_seconds: int
    token_cache_seconds: int
    max_pending_jobs_per_token: int
    max_stored_bytes_per_token: int
    serve_worker: str
    skops_trusted_types: str
    allowed_formats: str
    admin_token: str
    admin_token_sha256: str
    insecure_no_auth: bool
    cors_origins: str

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

    @property
    def skops_trusted(self) -> tuple[str, ...]:
        """``skops_trusted_types``, comma-separated, as a tuple."""
        return tuple(t.strip() for t in self.skops_trusted_types.split(",") if t.strip())

    @property
    def admin_token_digest(self) -> str:
        """The SHA-256 (hex) of the admin token, or ``""`` when there is none."""
        if self.admin_token_sha256:
            return self.admin_token_sha256.lower()
        if self.admin_token:
            return hashlib.sha256(self.admin_token.encode()).hexdigest()
        return ""

    @property
    def allowed_format_list(self) -> tuple[str, ...]:
        """``allowed_formats``, comma-separated, lower case; empty: any format."""
        return tuple(
            sorted({f.strip().lower() for f in self.allowed_formats.split(",") if f.strip()})
        )

    @property
    def cors_origin_list(self) -> list[str]:
        """``cors_origins``, comma-separated; empty: no CORS headers at all."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def runs_worker_in_serve(self) -> bool:
        """``serve_worker``: ``auto`` runs one evaluation worker beside the embedded default."""
        return self.serve_worker == "true" or (self.serve_worker == "auto" and self.is_embedded)


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
        key = f"{ENV_PREFIX}{name.upper()}"
        if f"{key}_FILE" in env:
            # The Docker-secrets way: the value is the content of a file (a trailing
            # newline dropped), so the secret itself is never in any environment.
            if key in env:
                raise ConfigError(f"set {key} or {key}_FILE, not both")
            values[name] = _read_setting_file(f"{key}_FILE", env[f"{key}_FILE"])
        elif key in env:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    pytypes = {"str": str, "int": int, "bool": bool}
    settings = Settings(
        **{name: _coerce(name, values[name], pytypes[str(kinds[name])]) for name in kinds}
    )
    _check(settings)
    return settings


def _read_setting_file(variable: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {variable}={path}: {exc}") from exc


_POSITIVE = (
    "max_artifact_bytes",
    "max_json_bytes",
    "default_page_size",
    "max_page_size",
    "max_metrics_per_evaluation",
    "max_evaluations_per_run",
    "max_dataset_bytes",
    "max_dataset_rows",
    "max_dataset_columns",
    "evaluation_timeout",
    "evaluation_cpu_seconds",
    "evaluation_memory_mb",
    "evaluation_scratch_mb",
    "evaluation_max_processes",
    "evaluation_open_files",
    "job_lease_seconds",
    "job_max_attempts",
    "worker_poll_ms",
)


def _check(settings: Settings) -> None:
    for name in _POSITIVE:
        if getattr(settings, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1, got {getattr(settings, name)}")
    if not 1 <= settings.max_name_length <= NAME_LEN:
        raise ConfigError(
            f"setting 'max_name_length' must be between 1 and {NAME_LEN} (the width of the"
            f" name columns), got {settings.max_name_length}"
        )
    if settings.settle_seconds < 0:
        raise ConfigError(
            f"setting 'settle_seconds' must be 0 (no settling) or more, got"
            f" {settings.settle_seconds}"
        )
    for name in ("max_pending_jobs_per_token", "max_stored_bytes_per_token"):
        if getattr(settings, name) < 0:
            raise ConfigError(
                f"setting {name!r} must be 0 (no limit) or more, got {getattr(settings, name)}"
            )
    if 0 < settings.max_stored_bytes_per_token < settings.max_artifact_bytes:
        raise ConfigError(
            f"setting 'max_stored_bytes_per_token' ({settings.max_stored_bytes_per_token}) must"
            f" be 0 (no limit) or at least 'max_artifact_bytes' ({settings.max_artifact_bytes})"
        )
    if settings.token_cache_seconds < 0:
        raise ConfigError(
            f"setting 'token_cache_seconds' must be 0 (off) or more, got"
            f" {settings.token_cache_seconds}"
        )
    if settings.default_page_size > settings.max_page_size:
        raise ConfigError(
            f"setting 'default_page_size' ({settings.default_page_size}) must not exceed"
            f" 'max_page_size' ({settings.max_page_size})"
        )
    if settings.admin_token and len(settings.admin_token) < 16:
        raise ConfigError("setting 'admin_token' must be at least 16 characters long")
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in settings.admin_token):
        raise ConfigError("setting 'admin_token' must be printable ASCII without spaces")
    if settings.admin_token_sha256 and not re.fullmatch(
        r"[0-9a-fA-F]{64}", settings.admin_token_sha256
    ):
        raise ConfigError("setting 'admin_token_sha256' must be a SHA-256 digest (64 hex digits)")
    if settings.evaluation_isolation not in ("strict", "process"):
        raise ConfigError(
            "setting 'evaluation_isolation' must be strict or process, got "
            f"{settings.evaluation_isolation!r}"
        )
    if settings.serve_worker not in ("auto", "true", "false"):
        raise ConfigError(
            f"setting 'serve_worker' must be auto, true or false, got {settings.serve_worker!r}"
        )
