"""Blob references and blob removal never interleave into a run without its artifact."""

from __future__ import annotations

import pytest
from flask import Flask

from modelreg.access.roles import Caller
from modelreg.errors import Unavailable
from modelreg.runs import services as runs
from modelreg.storage.artifacts import IncomingFile, LocalArtifactStore, StoredBlob
from tests.integration.conftest import Api

CONTENT = b"identical model bytes"


def test_a_run_is_never_stored_pointing_at_a_blob_removed_while_it_was_uploading(
    api: Api, app: Flask
) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1"})
    first = api.upload_run("m", "1", CONTENT).json
    context = app.extensions["modelreg"]

    class RemovalDuringUpload(LocalArtifactStore):
        """The real store; between "blob in place" and "run row written", another
        request removes the only run that used the same content."""

        def commit(self, upload: IncomingFile, expected_sha256: str | None = None) -> StoredBlob:
            blob = super().commit(upload, expected_sha256)
            runs.delete_run(
                context.db,
                context.store,
                first["id"],
                reason="",
                force=True,
                caller=Caller("t", "admin"),
            )
            return blob

    store = RemovalDuringUpload(context.store.root)
    upload = store.begin_upload(1 << 20)
    upload.write(CONTENT)

    with pytest.raises(Unavailable):
        runs.create_run(
            context.db,
            store,
            "m",
            "1",
            upload,
            "x.bin",
            runs.RunInput(),
            caller=Caller("t", "admin"),
        )

    listed = api.get("/models/m/versions/1/runs").json["items"]
    assert listed == [], "no run may exist without its artifact"
    again = api.upload_run("m", "1", CONTENT)
    assert again.status_code == 201
    assert api.get(f"/runs/{again.json['id']}/artifact").data == CONTENT
