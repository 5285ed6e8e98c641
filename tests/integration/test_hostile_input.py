"""Input crafted to break things: path traversal, control characters and look-alike
letters in names, JSON nested beyond reason, numbers beyond any type. Each is a JSON
error of the contract's shape, and nothing is written."""

from __future__ import annotations

import base64
import io
import json
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

from tests.integration.conftest import Api, assert_error, policy_body, sha
from tests.integration.routes import WRITE_METHODS, calls, fingerprint, world

# Path segments as they appear in the URL (already percent-encoded where meant).
TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2f..%2f..%2f..%2ftmp",
    "..",
    ".",
    "%2e%2e",
    "%2E%2E%2F%2E%2E%2Fetc",
    "%2e%2e%5c%2e%2e%5cwindows",
    "%252e%252e%252fetc",
    "%00",
    "a%00b",
    "..%00.json",
    "%C0%AE%C0%AE",
    "%FF%FE",
    "x%0D%0ASet-Cookie:%20a=b",
]
_ARGUMENT = re.compile(r"<(?:[^<>]*:)?(\w+)>")


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _store(app: Flask) -> Path:
    path: Path = app.extensions["modelreg"].settings.resolved_artifact_root
    return path


def test_path_traversal_in_every_path_parameter_is_a_json_4xx_and_writes_nothing(
    app: Flask, api: Api, tmp_path: Path
) -> None:
    values = world(api)
    routes = calls(app, values)
    files = _files(tmp_path)
    before = fingerprint(app)
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    checked = 0
    for call in routes:
        template = rules[call.endpoint]
        for argument in _ARGUMENT.findall(template):
            for hostile in TRAVERSALS:
                path = _ARGUMENT.sub(
                    lambda m, a=argument, h=hostile: (
                        h if m.group(1) == a else quote(str(values[m.group(1)]))
                    ),
                    template,
                )
                got = call.send(api.client, path=path)
                what = f"{call.method} {path}"
                assert 400 <= got.status_code < 500, (what, got.status_code, got.get_data()[:300])
                if got.status_code == 405:
                    continue
                code = {
                    400: "bad_request",
                    404: "not_found",
                    415: "unsupported_media_type",
                    422: "validation_error",
                }[got.status_code]
                assert_error(got, got.status_code, code)
                assert "Set-Cookie" not in got.headers, what
                checked += 1
    assert checked > 300
    assert fingerprint(app) == before
    assert _files(tmp_path) == files


HOSTILE_FILE_NAMES = [
    "../../../../../../tmp/{marker}",
    "..\\..\\..\\{marker}",
    "/etc/{marker}",
    "C:\\Windows\\System32\\{marker}.dll",
    "%2e%2e%2f%2e%2e%2f{marker}",
    "..",
    ".",
    "model\x00.pkl/../{marker}",
    "\u202e{marker}lkp.exe",
    "evil\r\nX-Injected: 1\r\n{marker}",
    "{marker}" + "x" * 1000,
]


def _sanitized(name: str) -> None:
    assert "/" not in name and "\\" not in name, name
    assert name not in (".", ".."), name
    assert len(name) <= 255, name
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name), repr(name)


@pytest.mark.parametrize("template", HOSTILE_FILE_NAMES)
def test_an_uploaded_file_name_is_metadata_only_and_the_stored_file_is_content_addressed(
    app: Flask, api: Api, tmp_path: Path, template: str
) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    marker = f"planted-{uuid.uuid4().hex}"
    filename = template.format(marker=marker)
    outside = _files(tmp_path.parent) - _files(_store(app))
    content = f"artifact {marker}".encode()

    if "\n" in filename:
        # Sent raw (HTTP clients escape it): the line break ends the header early, and
        # what follows is no header at all: a malformed body, refused.
        run = api.client.post(
            "/api/v1/models/m/versions/1.0/runs",
            data={"artifact": (io.BytesIO(content), filename), "metadata": "{}"},
            content_type="multipart/form-data",
        )
        assert_error(run, 400, "bad_request")
        assert _files(_store(app)) == set()
        return
    run = api.upload_run("m", "1.0", content, {}, filename=filename)
    assert run.status_code == 201, run.get_json()
    csv = f"a,b,label\n1,2,0\n3,4,1\n5,6,{len(marker) % 2}\n".encode()
    dataset = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(csv), filename),
            "metadata": json.dumps({"name": "held", "target": "label", "task": "classification"}),
        },
        content_type="multipart/form-data",
    )
    assert dataset.status_code == 201, dataset.get_json()

    body = run.get_json()
    _sanitized(body["artifact"]["filename"])
    store = _store(app)
    for digest in (sha(content), sha(csv)):
        assert (store / "sha256" / digest[:2] / digest[2:4] / digest).is_file()
    stored = {p.relative_to(store).as_posix() for p in _files(store)}
    assert stored == {f"sha256/{d[:2]}/{d[2:4]}/{d}" for d in (sha(content), sha(csv))}, (
        "only content-addressed files, no temporary file left"
    )
    assert _files(tmp_path.parent) - _files(store) == outside, "nothing written outside"
    assert not any(marker in str(p) for p in _files(tmp_path.parent))

    download = api.get(f"/runs/{body['id']}/artifact")
    assert download.get_data() == content
    disposition = download.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert "X-Injected" not in download.headers
    plain = re.search(r'filename="([^"]*)"', disposition)
    assert plain is not None and "/" not in plain.group(1) and "\\" not in plain.group(1)


# -- names: control characters and letters that only look like ASCII ------------------------

LOOKALIKE_NAMES = [
    "\u0410Imodel",  # Cyrillic capital A
    "AIm\u043edel",  # Cyrillic small o
    "\u0391Imodel",  # Greek capital alpha
    "\uff21Imodel",  # fullwidth capital A
    "AI\u200bmodel",  # zero-width space
    "AImodel\u200b",
    "\u200dAImodel",  # zero-width joiner
    "AImodel\ufeff",  # byte order mark
    "\u202eAImodel",  # right-to-left override
    "AI\u202emodel",
    "AImodel\u0301",  # combining accent
    "AImodel\u00a0",  # no-break space
    "AImodel\n",
    "AImodel\r",
    "AI\tmodel",
    "AImodel\x00",
    "AImodel\x7f",
    "AImodel\x1b[31m",
]


@pytest.fixture
def seeded(api: Api) -> dict[str, Any]:
    return world(api)


@pytest.mark.parametrize("name", LOOKALIKE_NAMES, ids=lambda n: n.encode("unicode_escape").decode())
def test_names_with_control_or_look_alike_characters_are_refused_everywhere(
    app: Flask, api: Api, seeded: dict[str, Any], name: str
) -> None:
    before = fingerprint(app)
    run_id = seeded["run_id"]
    checks = [
        (api.post("/models", {"name": name}), "name"),
        (api.post("/datasets", {"name": name, "sha256": sha(b"x")}), "name"),
        (api.post("/tokens", {"name": name, "role": "reader"}), "name"),
        (
            api.post(f"/runs/{run_id}/evaluations", {"dataset": "holdout", "metrics": {name: 1}}),
            "metrics",
        ),
        (api.put("/environments/E/policies/AImodel", policy_body(metric=name)), "metric"),
        (api.post("/environments/E/policies/AImodel/plan", policy_body(metric=name)), "metric"),
    ]
    for response, field in checks:
        assert_error(response, 422, "validation_error", field)
    upload = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(b"a,label\n1,0\n2,1\n"), "d.csv"),
            "metadata": json.dumps({"name": name, "target": "label", "task": "classification"}),
        },
        content_type="multipart/form-data",
    )
    assert_error(upload, 422, "validation_error", "name")
    meta = {"evaluations": [{"dataset": "holdout", "metrics": {name: 0.5}}]}
    assert_error(api.upload_run("AImodel", "1.0", b"r", meta), 422, "validation_error")
    # In a path: a name that cannot exist is refused or not found, never created.
    encoded = quote(name, safe="")
    put = api.put(f"/environments/{encoded}", {})
    assert put.status_code in (400, 422), put.get_json()
    assert_error(
        put, put.status_code, "bad_request" if put.status_code == 400 else "validation_error"
    )
    for path in (f"/models/{encoded}", f"/environments/{encoded}", f"/datasets/{encoded}"):
        got = api.get(path)
        assert got.status_code in (400, 404), (path, got.status_code)
        assert_error(got, got.status_code, "bad_request" if got.status_code == 400 else "not_found")
    assert fingerprint(app) == before


def test_the_genuine_ascii_name_still_works_beside_its_look_alikes(api: Api) -> None:
    assert api.post("/models", {"name": "AImodel"}).status_code == 201
    assert api.get("/models/aimodel").get_json()["name"] == "AImodel"
    assert api.get(f"/models/{quote(chr(0x410) + 'Imodel')}").status_code == 404


# -- JSON nested beyond reason -----------------------------------------------------------------

DEPTH = 100_000


def _deep_bodies() -> list[bytes]:
    return [
        b"[" * DEPTH,  # unterminated
        b"[" * DEPTH + b"]" * DEPTH,  # well-formed
        b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
        b'{"name": "n", "tags": {"x": ' + b"[" * DEPTH + b"]" * DEPTH + b"}}",
    ]


def test_deeply_nested_json_bodies_are_400_on_every_json_route(app: Flask, api: Api) -> None:
    values = world(api)
    before = fingerprint(app)
    checked = 0
    for call in calls(app, values):
        if call.method not in WRITE_METHODS or call.form is not None or call.body is None:
            continue  # uploads are below; a route without a body never reads one
        for body in _deep_bodies():
            got = api.client.open(
                call.path, method=call.method, data=body, content_type="application/json"
            )
            assert got.status_code in (400, 422), (str(call), got.status_code)
            assert_error(
                got,
                got.status_code,
                "bad_request" if got.status_code == 400 else "validation_error",
            )
            checked += 1
    assert checked > 40
    assert fingerprint(app) == before


@pytest.mark.parametrize("depth", [33, 500, 990, 5000, DEPTH])
def test_nesting_in_run_metadata_and_tags_is_refused_at_any_depth_past_the_limit(
    app: Flask, api: Api, depth: int
) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    before = fingerprint(app)
    nested = "[" * depth + "]" * depth
    for field in ("params", "tags", "source"):
        got = api.upload_run("m", "1.0", b"x", f'{{"{field}": {{"k": {nested}}}}}')
        assert got.status_code in (400, 422), got.get_data()[:300]
        if got.status_code == 422:
            assert_error(got, 422, "validation_error", field)
        else:
            assert_error(got, 400, "bad_request")
    got = api.client.post(
        "/api/v1/models/m/versions",
        data=f'{{"version": "2.0", "tags": {{"k": {nested}}}}}',
        content_type="application/json",
    )
    assert got.status_code in (400, 422)
    dataset = api.client.post(
        "/api/v1/datasets",
        data={
            "file": (io.BytesIO(b"a,label\n1,0\n2,1\n"), "d.csv"),
            "metadata": "[" * depth,
        },
        content_type="multipart/form-data",
    )
    assert dataset.status_code in (400, 422), dataset.get_data()[:300]
    assert fingerprint(app) == before


def test_nesting_within_the_limit_is_stored_and_read_back(api: Api) -> None:
    nested: Any = 1
    for _ in range(30):
        nested = [nested]
    got = api.post("/models", {"name": "m", "tags": {"deep": nested}})
    assert got.status_code == 201, got.get_json()
    assert api.get("/models/m").get_json()["tags"] == {"deep": nested}


def test_a_page_token_of_nested_json_is_a_bad_request(api: Api) -> None:
    token = base64.urlsafe_b64encode(b"[" * DEPTH).decode().rstrip("=")
    for path in ("/models", "/environments", "/tokens", "/datasets"):
        assert_error(api.get(f"{path}?page_token={token}"), 400, "bad_request")


# -- numbers beyond any type ---------------------------------------------------------------------

BIG = "1" + "0" * 1000  # 10**1000, as an integer literal
HUGE = "9" * 5000  # past Python's default int-parsing limit


@pytest.mark.parametrize(
    "literal, status",
    [("1e400", 422), ("-1e400", 422), (BIG, 422), ("-" + BIG, 422), (str(2**63), 422), (HUGE, 400)],
)
def test_huge_numbers_in_free_form_json_are_refused(
    app: Flask, api: Api, literal: str, status: int
) -> None:
    api.post("/models", {"name": "m"})
    api.post("/models/m/versions", {"version": "1.0"})
    before = fingerprint(app)
    code = "validation_error" if status == 422 else "bad_request"
    for field in ("params", "tags", "source"):
        got = api.upload_run("m", "1.0", b"x", f'{{"{field}": {{"n": {literal}}}}}')
        if status == 422:
            assert_error(got, 422, code, field)
        else:
            assert got.status_code == 400, got.get_data()[:300]  # metadata is not JSON Python reads
    got = api.client.post(
        "/api/v1/models",
        data=f'{{"name": "n", "tags": {{"n": {literal}}}}}',
        content_type="application/json",
    )
    assert_error(got, status, code, "tags" if status == 422 else None)
    assert fingerprint(app) == before


def test_the_largest_64_bit_integers_are_still_free_form_values(api: Api) -> None:
    tags = {"max": 2**63 - 1, "min": -(2**63), "zero": 0, "negative_zero": -0.0, "tiny": 5e-324}
    got = api.post("/models", {"name": "m", "tags": tags})
    assert got.status_code == 201, got.get_json()
    assert api.get("/models/m").get_json()["tags"] == tags


@pytest.mark.parametrize(
    "literal, status", [("1e400", 422), ("-1e400", 422), (BIG, 422), (HUGE, 400)]
)
def test_huge_numbers_as_metrics_and_thresholds_are_refused(
    app: Flask, api: Api, literal: str, status: int
) -> None:
    values = world(api)
    before = fingerprint(app)
    code = "validation_error" if status == 422 else "bad_request"
    run = values["run_id"]

    def post(path: str, raw: str, method: str = "POST") -> Any:
        return api.client.open(
            f"/api/v1{path}", method=method, data=raw, content_type="application/json"
        )

    got = post(
        f"/runs/{run}/evaluations", f'{{"dataset": "holdout", "metrics": {{"f1": {literal}}}}}'
    )
    assert_error(got, status, code, "metrics" if status == 422 else None)
    for field in ("min_value", "min_improvement"):
        raw = json.dumps(policy_body())[:-1] + f', "{field}": {literal}}}'
        for path, method in (
            ("/environments/E/policies/AImodel", "PUT"),
            ("/environments/E/policies/AImodel/plan", "POST"),
        ):
            got = post(path, raw, method)
            assert_error(got, status, code, field if status == 422 else None)
    got = post(
        "/environments/E/models/AImodel/pin", f'{{"run_id": {literal}, "reason": "x"}}', "PUT"
    )
    assert got.status_code in (400, 422), got.get_data()[:300]
    meta = f'{{"evaluations": [{{"dataset": "holdout", "metrics": {{"f1": {literal}}}}}]}}'
    got = api.upload_run("AImodel", "1.0", b"fresh", meta)
    assert got.status_code in (400, 422), got.get_data()[:300]
    assert fingerprint(app) == before


def test_negative_zero_is_an_ordinary_metric_value(api: Api) -> None:
    values = world(api)
    got = api.client.post(
        f"/api/v1/runs/{values['run_id']}/evaluations",
        data='{"dataset": "holdout", "metrics": {"r2": -0.0, "mae": -0}}',
        content_type="application/json",
    )
    assert got.status_code == 201, got.get_json()
    stored = {
        e["metric"]: e["value"]
        for e in api.get(f"/runs/{values['run_id']}").get_json()["evaluations"]
    }
    assert stored["r2"] == 0.0 and stored["mae"] == 0.0


@pytest.mark.parametrize("number", [str(2**63), str(2**64), BIG, HUGE, "-1", "0", "1e3"])
def test_ids_in_paths_past_64_bits_or_not_positive_integers_are_404(
    app: Flask, api: Api, number: str
) -> None:
    values = world(api)
    before = fingerprint(app)
    for path in (
        f"/runs/{number}",
        f"/runs/{number}/artifact",
        f"/runs/{number}/evaluations",
        f"/jobs/{number}",
        f"/tokens/{number}",
        f"/datasets/holdout/revisions/{number}",
        f"/datasets/holdout/revisions/{number}/content",
    ):
        assert_error(api.get(path), 404, "not_found")
    for method, path in (("DELETE", f"/runs/{number}"), ("DELETE", f"/tokens/{number}")):
        got = api.client.open(f"/api/v1{path}", method=method, json={"reason": "x"})
        assert_error(got, 404, "not_found")
    assert fingerprint(app) == before
    assert values["run_id"] >= 1


def test_a_nul_character_in_free_text_is_never_a_server_error(
    app: Flask, api: Api, database_url: str
) -> None:
    """PostgreSQL cannot store NUL in text: a 422 there, never a 500 (SQLite stores it)."""
    values = world(api)
    nul = "before\x00after"
    attempts = [
        ("POST", "/models", {"name": "n", "description": nul}),
        ("POST", "/models/AImodel/versions", {"version": "3.0", "description": nul}),
        ("PUT", "/environments/F", {"description": nul}),
        ("POST", "/environments/E/policies/AImodel/plan", policy_body(dataset=nul)),
        ("POST", f"/runs/{values['run_id']}/evaluations", {"dataset": nul, "metrics": {"f1": 1}}),
        ("POST", f"/runs/{values['run_id']}/evaluate", {"dataset": nul}),
    ]
    for method, path, body in attempts:
        got = api.client.open(f"/api/v1{path}", method=method, json=body)
        assert got.status_code < 500, (path, got.get_data()[:300])
        if database_url.startswith("postgresql") or got.status_code >= 400:
            assert_error(
                got, got.status_code, "validation_error" if got.status_code == 422 else "not_found"
            )
