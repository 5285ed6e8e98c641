"""What the client's tests share, in-process and over real HTTP alike."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score

from modelreg.client import ChampionLoader, RegistryError
from tests.e2e.test_wine_scenario import Holdout


def raises(kind: type[RegistryError], call: Callable[[], Any]) -> RegistryError:
    """The ``kind`` exception ``call`` raises (exactly that class, not a subclass)."""
    with pytest.raises(kind) as caught:
        call()
    assert type(caught.value) is kind, f"{type(caught.value).__name__}: {caught.value}"
    return caught.value


def forest(holdout: Holdout, n_estimators: int = 5, seed: int = 0) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(
        holdout.x_train, holdout.y_train
    )


def f1_of(model: Any, holdout: Holdout) -> float:
    return float(f1_score(holdout.y_test, model.predict(holdout.x_test), average="weighted"))


def artifact_file(tmp_path: Path, name: str, content: bytes | None = None) -> Path:
    path = tmp_path / name
    path.write_bytes(content if content is not None else f"artifact {name}".encode())
    return path


@dataclass
class Requests:
    """Every response a session received: ``(method, path, status)``."""

    env: str
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            method = response.request.method or ""
            self.seen.append((method, urlsplit(response.url).path, response.status_code))

    def artifact_downloads(self) -> int:
        return sum(1 for m, path, s in self.seen if m == "GET" and path.endswith("/artifact"))

    def champion_polls(self) -> list[int]:
        """Statuses of ``GET /environments/{env}/models/{model}``: 200 or 304."""
        return [
            s
            for m, path, s in self.seen
            if m == "GET" and path.split("/")[-4:-1] == ["environments", self.env, "models"]
        ]


def counted(loader: ChampionLoader, env: str) -> Requests:
    """Record every response ``loader``'s session receives."""
    log = Requests(env)
    loader.registry._http.session.hooks["response"].append(log)
    return log
