"""The serving layers' lookup keeps answering when the database drops its connections."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_URL
from tests.integration.conftest import Api, register_dataset


def _champion_setup(api: Api) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    register_dataset(api, "d", b"d")
    meta = {"evaluations": [{"dataset": "d", "metrics": {"f1": 0.9}}]}
    assert api.upload_run("m", "1.0", b"x", meta).status_code == 201
    for stage in ("Staging", "Production"):
        api.post("/models/m/versions/1.0/transitions", {"stage": stage, "reason": "release"})
    api.put("/environments/PROD")
    body = {"versions": "", "stages": ["Production"], "metric": "f1", "dataset": "d", "reason": "t"}
    assert api.put("/environments/PROD/policies/m", body).status_code == 201


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_champion_is_served_after_postgresql_terminates_every_pooled_connection(
    api: Api, database_url: str
) -> None:
    _champion_setup(api)
    first = api.get("/environments/PROD/models/m")
    assert first.status_code == 200

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": make_url(database_url).database},
        ).scalar()
    admin.dispose()
    assert killed, "the test must have cut the pooled connections"

    again = api.get("/environments/PROD/models/m")

    assert again.status_code == 200, again.json
    assert again.json == first.json
    assert again.headers["ETag"] == first.headers["ETag"]
