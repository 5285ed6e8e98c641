"""Which temporary upload files a starting server removes, and which it keeps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from modelreg.storage.artifacts import STALE_TMP_SECONDS, LocalArtifactStore, _where, tmp_prefix


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _file(directory: Path, name: str, *, age: float = 0.0) -> Path:
    path = directory / name
    path.write_bytes(b"partial")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_clean_tmp_removes_what_dead_or_silent_uploads_left_and_keeps_live_ones(
    tmp_path: Path,
) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    here, dead = _where(), _dead_pid()
    live_upload = store.begin_upload(1024)  # this process: alive, mid-upload
    live_upload.write(b"some bytes")
    killed_here = _file(store.tmp, f"upload-{here}-{dead}-abcd1234")
    # Another host (or container): its pids mean nothing here; kept while it writes.
    elsewhere_fresh = _file(store.tmp, f"upload-otherhost-4026531836-{dead}-abcd1234")
    elsewhere_silent = _file(
        store.tmp, f"upload-otherhost-1-{dead}-efgh5678", age=STALE_TMP_SECONDS + 60
    )
    old_style_fresh = _file(store.tmp, "upload-k2j3h4g5")
    old_style_silent = _file(store.tmp, "upload-z9y8x7w6", age=STALE_TMP_SECONDS + 60)
    (store.tmp / "a-directory").mkdir()

    removed = store.clean_tmp()

    assert set(removed) == {killed_here, elsewhere_silent, old_style_silent}
    remaining = {p.name for p in store.tmp.iterdir()}
    assert remaining == {
        live_upload.path.name,
        elsewhere_fresh.name,
        old_style_fresh.name,
        "a-directory",
    }
    assert live_upload.path.name.startswith(tmp_prefix())
    # The live upload still completes.
    blob = store.commit(live_upload)
    assert store.exists(blob.sha256)
