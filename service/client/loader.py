"""``ChampionLoader``: what a serving layer embeds to serve its environment's champion.

- ``load()`` returns the deserialized champion (loading it on first use).
- ``refresh()`` polls with ``If-None-Match``: an unchanged champion costs one 304 and
  downloads nothing; a new one is downloaded (unless cached), verified, loaded, and
  swapped in. Returns whether the champion changed.
- Artifacts are cached on disk by sha256 and verified after download; a cached file
  whose bytes no longer match is downloaded again.
- When the registry is unreachable (or failing), the cached model keeps being served
  and a log line says so; a process that starts during an outage loads the last
  champion it knew from the cache.
- Safe to call from several threads: one refresh at a time; ``load()`` never waits
  for a refresh in progress once a model is loaded.
- Only code that may run, runs: a champion whose artifact format its policy does not
  allow (the champion's ``allowed_formats``), or a pickle/joblib one when the loader
  was built with ``allow_pickle=False``, raises :class:`FormatNotAllowed` before any
  byte is downloaded or unpickled, and the model loaded before keeps serving. The
  default deserializer picks the loader by format: joblib/pickle with ``joblib``,
  skops with ``skops.io`` after its trusted-type check (``skops_trusted`` adds types),
  ONNX with ``onnxruntime.InferenceSession``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelreg.client.errors import (
    FormatNotAllowed,
    RegistryError,
    ServerError,
    Unavailable,
    Unreachable,
)
from modelreg.client.registry import Registry
from modelreg.client.resources import Champion
from modelreg.client.transport import sha256_of

log = logging.getLogger("modelreg.loader")

# Failures that mean "the registry cannot answer now", not "the answer is no".
_OUTAGE = (Unreachable, Unavailable, ServerError)
# Formats whose loading runs arbitrary code (pickle underneath).
PICKLE_FORMATS = frozenset({"joblib", "pickle"})


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelreg"


class ChampionLoader:
    def __init__(
        self,
        url: str,
        environment: str,
        model: str,
        *,
        token: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        deserialize: Callable[[Path], Any] | None = None,
        timeout: float = 30.0,
        registry: Registry | None = None,
        allow_pickle: bool = True,
        skops_trusted: Sequence[str] = (),
    ) -> None:
        self.environment = environment
        self.model_name = model
        self.registry = registry or Registry(url, token, timeout=timeout)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.allow_pickle = allow_pickle
        self.skops_trusted = tuple(skops_trusted)
        self._deserialize = deserialize
        self._lock = threading.Lock()
        self._model: Any = None
        self._champion: Champion | None = None
        self._etag: str | None = None
        self.offline = False  # True while the last poll could not reach the registry

    # -- public ------------------------------------------------------------------------

    @property
    def champion(self) -> Champion | None:
        """The champion currently loaded (``None`` before the first load)."""
        return self._champion

    def load(self) -> Any:
        """The deserialized champion, fetched on first use."""
        if self._champion is None:
            self.refresh()
        if self._champion is None:  # pragma: no cover - refresh raises instead
            raise RegistryError("no champion could be loaded")
        return self._model

    def refresh(self) -> bool:
        """Poll the registry; load a new champion if it changed. Returns whether it did."""
        with self._lock:
            try:
                champion, etag = self.registry.champion_if_changed(
                    self.environment, self.model_name, self._etag if self._champion else None
                )
            except _OUTAGE as exc:
                return self._outage(exc)
            if self.offline:
                log.info("registry %s reachable again", self.registry.url)
                self.offline = False
            if champion is None:  # 304: what we serve is current
                return False
            self.check_format(champion)
            if self._champion is not None and champion.sha256 == self._champion.sha256:
                self._champion, self._etag = champion, etag  # same bytes: nothing to load
                self._remember(champion)
                return False
            try:
                path = self._artifact(champion)
            except _OUTAGE as exc:
                return self._outage(exc)
            model = self._load(champion, path)
            changed = self._champion is None or self._champion.run_id != champion.run_id
            self._model, self._champion, self._etag = model, champion, etag
            self._remember(champion)
            log.info(
                "serving %s %s run %s (sha256 %s) in %s",
                champion.model,
                champion.version,
                champion.run_id,
                champion.sha256[:12],
                champion.environment,
            )
            return changed

    def check_format(self, champion: Champion) -> None:
        """Raise :class:`FormatNotAllowed` unless this champion's format may be loaded."""
        fmt = (champion.format or "").lower()
        allowed = tuple(f.lower() for f in champion.allowed_formats)
        details = {"format": champion.format, "allowed_formats": list(allowed)}
        if allowed and fmt not in allowed:
            raise FormatNotAllowed(
                f"{champion.environment}'s policy for {champion.model} allows only "
                f"{', '.join(allowed)}; run {champion.run_id} is {champion.format or 'unknown'}",
                details,
            )
        if not self.allow_pickle and fmt in PICKLE_FORMATS:
            raise FormatNotAllowed(
                f"run {champion.run_id} of {champion.model} is a {fmt} artifact, which runs "
                "code when loaded, and this loader was built with allow_pickle=False",
                details,
            )

    # -- internals -----------------------------------------------------------------------

    def _load(self, champion: Champion, path: Path) -> Any:
        if self._deserialize is not None:
            return self._deserialize(path)
        return load_artifact(path, champion.format, self.skops_trusted, self.allow_pickle)

    def _outage(self, exc: RegistryError) -> bool:
        if self._champion is None:
            remembered = self._recall()
            if remembered is None:
                raise exc
            champion, path = remembered
            self.check_format(champion)
            self._model, self._champion = self._load(champion, path), champion
            log.warning(
                "registry %s unreachable (%s); serving cached %s run %s (sha256 %s)",
                self.registry.url,
                exc,
                champion.model,
                champion.run_id,
                champion.sha256[:12],
            )
        else:
            log.warning(
                "registry %s unreachable (%s); keeping cached %s run %s",
                self.registry.url,
                exc,
                self._champion.model,
                self._champion.run_id,
            )
        self.offline = True
        return False

    def _cached(self, sha256: str) -> Path:
        return self.cache_dir / "sha256" / sha256

    def _artifact(self, champion: Champion) -> Path:
        """The champion's bytes on disk, downloaded and verified unless already cached."""
        path = self._cached(champion.sha256)
        if path.is_file() and sha256_of(path) == champion.sha256:
            return path
        assert champion.run_id is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.registry.download_artifact(
            champion.run_id, path, expected_sha256=champion.sha256, progress=False
        )
        return path

    def _state_file(self) -> Path:
        key = hashlib.sha256(
            f"{self.registry.url}|{self.environment}|{self.model_name}".lower().encode()
        ).hexdigest()[:16]
        return self.cache_dir / f"champion-{key}.json"

    def _remember(self, champion: Champion) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".champion-")
        with os.fdopen(fd, "w") as fh:
            json.dump(champion.raw, fh)
        os.replace(tmp, self._state_file())

    def _recall(self) -> tuple[Champion, Path] | None:
        try:
            champion = Champion.from_json(json.loads(self._state_file().read_text()))
        except (OSError, ValueError):
            return None
        path = self._cached(champion.sha256)
        if not path.is_file() or sha256_of(path) != champion.sha256:
            return None
        return champion, path


def load_artifact(
    path: Path, fmt: str | None, skops_trusted: Sequence[str] = (), allow_pickle: bool = True
) -> Any:
    """Load an artifact by its format; skops files pass the trusted-type check first.

    Any other format is read with joblib (which unpickles), unless ``allow_pickle`` is
    false: then only skops and ONNX load.
    """
    fmt = (fmt or "").lower()
    if fmt == "skops":
        import skops.io as sio

        untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(skops_trusted))
        if untrusted:
            raise FormatNotAllowed(
                "the skops artifact contains types that are not trusted: "
                + ", ".join(untrusted[:20])
                + " (pass skops_trusted= to accept them)",
                {"format": "skops", "untrusted": untrusted},
            )
        return sio.load(path, trusted=list(skops_trusted))
    if fmt == "onnx":
        import onnxruntime

        return onnxruntime.InferenceSession(str(path))
    if allow_pickle:
        import joblib

        return joblib.load(path)
    raise FormatNotAllowed(
        f"artifact format {fmt or 'unknown'!r} has no loader that runs no code; "
        "pass deserialize= to load it",
        {"format": fmt or None},
    )
