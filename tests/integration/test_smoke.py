from __future__ import annotations

from tests.integration.conftest import Api


def test_a_registered_model_can_be_read_back_by_any_capitalisation(api: Api) -> None:
    assert api.post("/models", {"name": "AImodel"}).status_code == 201
    got = api.get("/models/aimodel")
    assert got.status_code == 200
    assert got.json["name"] == "AImodel"
