"""Who may do what: every route against every kind of credential, the spellings that
must not get around it, the tokens API, and the ways in without a token."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from modelreg.access import tokens
from modelreg.app import create_app
from modelreg.cli.main import main
from modelreg.config import load_settings
from modelreg.db import migrate
from modelreg.db.models import ApiToken, utcnow
from modelreg.roles import ROLES, Caller, allows
from modelreg.web.route_roles import OPEN_ENDPOINTS, ROUTE_ROLES, required_role
from tests.integration.conftest import (
    ADMIN_TOKEN,
    Api,
    assert_error,
    bearer,
    create_version,
)
from tests.integration.routes import Call, calls, fingerprint, world

ROLE_HEADERS = dict[str, dict[str, str]]
SETUP = Caller("test-setup", "admin")


@pytest.fixture
def values(api: Api) -> dict[str, Any]:
    return world(api)


@pytest.fixture
def as_role(api: Api) -> ROLE_HEADERS:
    """Authorization headers of a token of every role."""
    return {role: bearer(api, f"{role}-token", role) for role in ROLES}


def _anonymous(app: Flask) -> FlaskClient:
    return app.test_client()  # no Authorization header at all


def _unauthenticated(response: TestResponse, what: str) -> None:
    assert response.status_code == 401, (what, response.status_code, response.get_data()[:300])
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), what
    if response.request.method != "HEAD":
        assert_error(response, 401, "unauthenticated")


def _expire(app: Flask, token_id: int) -> None:
    with app.extensions["modelreg"].db.unit_of_work() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def _expired_token(app: Flask) -> str:
    """A token made through the service layer with an expiry, which then passed."""
    with app.extensions["modelreg"].db.unit_of_work() as session:
        created = tokens.create(
            session,
            "soon-expired",
            "admin",
            expires_at=utcnow() + timedelta(hours=1),
            caller=SETUP,
        )
        session.commit()
        token_id, secret = created.token.id, created.secret
    _expire(app, token_id)
    return secret


def _revoked_token(api: Api) -> str:
    made = api.post("/tokens", {"name": "soon-revoked", "role": "admin"}).get_json()
    assert api.delete(f"/tokens/{made['id']}").status_code == 200
    return str(made["secret"])


# -- the table of roles covers every route ---------------------------------------------


def test_every_routed_endpoint_and_method_is_declared_in_the_role_table(app: Flask) -> None:
    undeclared = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if method not in ROUTE_ROLES.get(rule.endpoint, {}):
                undeclared.append(f"{rule.endpoint} {method} {rule.rule}")
    assert undeclared == [], "declare these in modelreg.web.route_roles.ROUTE_ROLES"


def test_only_the_health_checks_answer_without_a_token(app: Flask) -> None:
    client = _anonymous(app)
    open_rules = [r for r in app.url_map.iter_rules() if r.endpoint in OPEN_ENDPOINTS]
    assert sorted(r.rule for r in open_rules) == ["/healthz", "/readyz"]
    for rule in open_rules:
        assert client.get(rule.rule).status_code == 200
        assert client.head(rule.rule).status_code == 200


# -- 401: no, malformed, unknown, expired, revoked tokens ------------------------------


def test_every_route_refuses_missing_malformed_unknown_expired_and_revoked_tokens_with_401(
    app: Flask, api: Api, values: dict[str, Any]
) -> None:
    expired, revoked = _expired_token(app), _revoked_token(api)
    credentials: dict[str, str | None] = {
        "no header": None,
        "scheme only": "Bearer",
        "scheme and space": "Bearer ",
        "basic": "Basic x",
        "basic with the admin token": f"Basic {ADMIN_TOKEN}",
        "two tokens": "Bearer a b",
        "non-ascii": "Bearer tökén",
        "non-latin-1": "Bearer ☃☃☃",
        "token without scheme": ADMIN_TOKEN,
        "unknown": "Bearer mr_" + "x" * 43,
        "admin token with a suffix": f"Bearer {ADMIN_TOKEN}x",
        "expired": f"Bearer {expired}",
        "revoked": f"Bearer {revoked}",
    }
    client = _anonymous(app)
    before = fingerprint(app)
    routes = calls(app, values, methods=("HEAD", "OPTIONS"))
    for call in routes:
        for label, header in credentials.items():
            headers = {} if header is None else {"Authorization": header}
            _unauthenticated(call.send(client, headers), f"{call} with {label}")
    assert fingerprint(app) == before


def test_an_expired_token_states_why_and_so_does_a_revoked_one(app: Flask, api: Api) -> None:
    expired, revoked = _expired_token(app), _revoked_token(api)
    client = _anonymous(app)

    for secret, word in ((expired, "expired"), (revoked, "revoked")):
        got = client.get("/api/v1/models", headers={"Authorization": f"Bearer {secret}"})
        error = assert_error(got, 401, "unauthenticated")
        assert word in error["message"]


def test_a_revoked_token_is_refused_on_the_very_next_request(app: Flask, api: Api) -> None:
    made = api.post("/tokens", {"name": "short-lived", "role": "release"}).get_json()
    client = _anonymous(app)
    headers = {"Authorization": f"Bearer {made['secret']}"}
    assert client.get("/api/v1/models", headers=headers).status_code == 200

    revoked = api.delete(f"/tokens/{made['id']}")

    assert revoked.status_code == 200
    assert revoked.get_json()["state"] == "revoked"
    _unauthenticated(client.get("/api/v1/models", headers=headers), "after revocation")
    got = client.put("/api/v1/environments/X", json={}, headers=headers)
    _unauthenticated(got, "a write after revocation")
    assert api.get("/environments/X").status_code == 404


def test_a_token_whose_expiry_passes_is_refused_from_then_on(app: Flask, api: Api) -> None:
    with app.extensions["modelreg"].db.unit_of_work() as session:
        created = tokens.create(
            session, "ci-nightly", "ci", expires_at=utcnow() + timedelta(days=1), caller=SETUP
        )
        session.commit()
    headers = {"Authorization": f"Bearer {created.secret}"}
    client = _anonymous(app)
    assert client.get("/api/v1/models", headers=headers).status_code == 200
    assert api.get(f"/tokens/{created.token.id}").get_json()["state"] == "active"

    _expire(app, created.token.id)

    _unauthenticated(client.get("/api/v1/models", headers=headers), "after expiry")
    assert api.get(f"/tokens/{created.token.id}").get_json()["state"] == "expired"


# -- 403 below the route's role; the route's role passes --------------------------------


def test_every_role_below_a_routes_role_is_refused_with_403_and_nothing_is_written(
    app: Flask, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    client = _anonymous(app)
    before = fingerprint(app)
    checked = 0
    for call in calls(app, values, methods=("HEAD",)):
        required = required_role(call.endpoint, call.method)
        assert required is not None, call
        for role in ROLES[: ROLES.index(required)]:
            got = call.send(client, as_role[role])
            what = f"{call} as {role} (needs {required})"
            assert got.status_code == 403, (what, got.status_code, got.get_data()[:300])
            if call.method != "HEAD":
                error = assert_error(got, 403, "forbidden")
                assert error["details"] == {"required": required, "role": role}, what
            checked += 1
    assert fingerprint(app) == before
    assert checked > 20


def test_the_role_a_route_declares_is_enough_to_pass_access_control(
    app: Flask, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    client = _anonymous(app)
    outcomes = []
    for call in calls(app, values, methods=("HEAD", "OPTIONS")):
        required = required_role(call.endpoint, call.method)
        assert required is not None, call
        got = call.send(client, as_role[required])
        outcomes.append((str(call), required, got.status_code))
    refused = [o for o in outcomes if o[2] in (401, 403) or o[2] >= 500]
    assert refused == [], refused
    # The calls are valid: most of them succeed outright.
    assert sum(1 for o in outcomes if o[2] < 300) > len(outcomes) * 2 // 3, outcomes


def test_the_role_table_is_ordered_reader_ci_release_admin() -> None:
    assert ROLES == ("reader", "ci", "release", "admin")
    assert all(allows("admin", r) for r in ROLES)
    assert not any(allows("reader", r) for r in ROLES[1:])
    assert not allows("root", "reader")


# -- spellings that must not get more than the canonical route ---------------------------


def test_a_trailing_slash_reaches_no_route_and_changes_nothing(
    app: Flask, api: Api, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    client = _anonymous(app)
    before = fingerprint(app)
    for call in calls(app, values):
        for headers in ({}, as_role["reader"], as_role["admin"]):
            got = call.send(client, headers, path=call.path + "/")
            if not headers:
                _unauthenticated(got, f"{call} with a trailing slash")
            else:
                assert_error(got, 404, "not_found")
    assert fingerprint(app) == before


def test_head_needs_what_get_needs_and_does_nothing_where_there_is_no_get(
    app: Flask, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    client = _anonymous(app)
    before = fingerprint(app)
    # A URL may be served by two endpoints (a version's GET and its DELETE): HEAD
    # follows the URL's GET, whichever endpoint has it (_get_role).
    for call in calls(app, values, methods=("HEAD",)):
        if call.method == "GET":
            required = ROUTE_ROLES[call.endpoint]["GET"]
            head = call.send(client, as_role[required], method="HEAD")
            assert head.status_code in (200, 404), (str(call), head.status_code)
            assert head.get_data() == b""
            for role in ROLES[: ROLES.index(required)]:
                assert call.send(client, as_role[role], method="HEAD").status_code == 403
        elif call.writes and _get_role(app, call) is None:
            head = call.send(client, as_role["admin"], method="HEAD")
            assert head.status_code == 405, (str(call), head.status_code)
    assert fingerprint(app) == before


OVERRIDES = ("X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method")


def _get_role(app: Flask, call: Call) -> str | None:
    """The role a GET of ``call``'s URL needs, whichever endpoint serves that GET."""
    rules = {rule.rule for rule in app.url_map.iter_rules(call.endpoint)}
    for rule in app.url_map.iter_rules():
        if rule.rule in rules and rule.endpoint in ROUTE_ROLES:
            found = ROUTE_ROLES[rule.endpoint].get("GET")
            if found is not None:
                return found
    return None


def _as_get(app: Flask, call: Call, role: str) -> set[int]:
    """What ``role`` gets from a plain GET on ``call``'s route."""
    get_role = _get_role(app, call)
    if get_role is None:
        return {405}
    return {200, 404} if allows(role, get_role) else {403}


def test_method_override_headers_and_parameters_are_ignored(
    app: Flask, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    """A GET that names a write in an override stays a GET, even for the admin; a
    reader's write that names GET stays a write and is refused."""
    client = _anonymous(app)
    before = fingerprint(app)
    writes = [c for c in calls(app, values) if c.writes]
    assert len(writes) > 10
    for call in writes:
        for role in ("reader", "admin"):
            expected = _as_get(app, call, role)
            for header in OVERRIDES:
                got = call.send(client, {**as_role[role], header: call.method}, method="GET")
                assert got.status_code in expected, (str(call), role, header, got.status_code)
            got = call.send(client, as_role[role], method="GET", query=f"?_method={call.method}")
            assert got.status_code in expected, (str(call), role, got.status_code)
    assert fingerprint(app) == before
    for call in writes:
        for header in OVERRIDES:
            got = call.send(client, {**as_role["reader"], header: "GET"})
            assert_error(got, 403, "forbidden")
        assert_error(call.send(client, as_role["reader"], query="?_method=GET"), 403, "forbidden")
    assert fingerprint(app) == before


def _respell(path: str) -> list[str]:
    """Other spellings of a path: doubled slashes and upper-case prefixes."""
    rest = path.removeprefix("/api/v1")
    return [
        f"/api//v1{rest}",
        f"/api/v1/{rest}",
        f"/api/v1{rest.replace('/', '//', 2)}",
        f"/API/V1{rest}",
        f"/Api/v1{rest}",
        f"/api/V1{rest}",
        f"/api/v1{rest.upper()}",
    ]


def test_double_slashes_and_case_variants_reach_no_route_and_change_nothing(
    app: Flask, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    client = _anonymous(app)
    before = fingerprint(app)
    for call in calls(app, values):
        for path in _respell(call.path):
            _unauthenticated(call.send(client, path=path), f"{call.method} {path}")
            got = call.send(client, as_role["admin"], path=path)
            assert_error(got, 404, "not_found")
            assert "Location" not in got.headers
    assert fingerprint(app) == before


def _percent_encoded(path: str) -> str:
    """``/api/v1/models/x`` → ``/api/v1/%6Dodels/%78``: the first character of every
    segment after the prefix percent-encoded."""
    head, _, rest = path.partition("/api/v1/")
    parts = rest.split("/")
    encoded = [f"%{ord(p[0]):02X}{p[1:]}" if p else p for p in parts]
    return f"{head}/api/v1/" + "/".join(encoded)


def test_percent_encoded_paths_get_exactly_what_the_canonical_path_gets(
    app: Flask, values: dict[str, Any], as_role: ROLE_HEADERS
) -> None:
    client = _anonymous(app)
    before = fingerprint(app)
    for call in calls(app, values):
        path = _percent_encoded(call.path)
        assert path != call.path
        _unauthenticated(call.send(client, path=path), f"{call.method} {path}")
        required = required_role(call.endpoint, call.method)
        assert required is not None
        for role in ROLES[: ROLES.index(required)]:
            got = call.send(client, as_role[role], path=path)
            assert_error(got, 403, "forbidden")
    assert fingerprint(app) == before
    got = _anonymous(app).get(_percent_encoded("/api/v1/models/AImodel"), headers=as_role["reader"])
    assert got.status_code == 200 and got.get_json()["name"] == "AImodel"


# -- transitions: ci between None and Staging only --------------------------------------


def _move(api: Api, version: str, stage: str, headers: dict[str, str]) -> TestResponse:
    body = {"stage": stage, "reason": "access test", "force": True}
    return api.post(f"/models/m/versions/{version}/transitions", body, headers=headers)


def test_ci_moves_versions_between_none_and_staging_and_nothing_else(
    api: Api, as_role: ROLE_HEADERS
) -> None:
    api.post("/models", {"name": "m"})
    ci = as_role["ci"]
    create_version(api, "m", "1.0")
    create_version(api, "m", "2.0", "Staging")
    create_version(api, "m", "3.0", "Production")
    create_version(api, "m", "4.0", "Archived")

    def stage(version: str) -> str:
        return str(api.get(f"/models/m/versions/{version}").get_json()["stage"])

    assert _move(api, "1.0", "Staging", ci).status_code == 200
    assert _move(api, "1.0", "None", ci).status_code == 200
    assert stage("1.0") == "None"
    refused = [
        ("1.0", "Archived"),
        ("2.0", "Production"),
        ("2.0", "Archived"),
        ("3.0", "Staging"),
        ("3.0", "Archived"),
        ("4.0", "Staging"),
    ]
    for version, to in refused:
        before = stage(version)
        got = _move(api, version, to, ci)
        error = assert_error(got, 403, "forbidden")
        assert error["details"].get("required") == "release", error
        assert stage(version) == before
    assert stage("2.0") == "Staging"

    # release may make every transition of the design table.
    release = as_role["release"]
    create_version(api, "m", "5.0")
    steps = ["Archived", "Staging", "Production", "Staging", "Archived", "Staging", "None"]
    steps += ["Staging", "Production", "Archived"]
    for to in steps:
        got = _move(api, "5.0", to, release)
        assert got.status_code == 200, (to, got.get_json())
        assert stage("5.0") == to


# -- tokens in the URL, the admin token, the tokens API ---------------------------------


@pytest.mark.parametrize("parameter", ["token", "access_token", "api_key", "Token"])
def test_a_token_in_the_query_string_is_refused_with_400_even_when_valid(
    app: Flask, api: Api, parameter: str
) -> None:
    client = _anonymous(app)
    before = fingerprint(app)
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        got = client.get(f"/api/v1/models?{parameter}={ADMIN_TOKEN}", headers=headers)
        error = assert_error(got, 400, "bad_request")
        assert ADMIN_TOKEN not in got.get_data(as_text=True)
        assert error["details"]["query"] == [parameter.lower()]
        got = client.post(
            f"/api/v1/models?{parameter}={ADMIN_TOKEN}", json={"name": "n"}, headers=headers
        )
        assert_error(got, 400, "bad_request")
    assert fingerprint(app) == before
    assert api.get("/models/n").status_code == 404


def test_the_admin_token_from_the_environment_acts_as_admin(app: Flask) -> None:
    client = _anonymous(app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    made = client.post("/api/v1/tokens", json={"name": "first", "role": "admin"}, headers=headers)

    assert made.status_code == 201, made.get_json()
    assert made.get_json()["created_by"] == "admin-token"
    assert client.get("/api/v1/tokens", headers=headers).status_code == 200
    # The same secret in other case, or without it configured, is nobody.
    _unauthenticated(
        client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN.upper()}"}),
        "upper-cased admin token",
    )


def test_without_an_admin_token_configured_no_secret_is_the_admin(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={}, data_dir=str(tmp_path / "d"), database_url=database_url, admin_token=""
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        for header in ("Bearer ", "Bearer x", f"Bearer {ADMIN_TOKEN}"):
            _unauthenticated(client.get("/api/v1/tokens", headers={"Authorization": header}), "")
    finally:
        app.extensions["modelreg"].db.dispose()


def test_a_new_tokens_secret_is_shown_once_and_only_its_hash_is_stored(
    app: Flask, api: Api
) -> None:
    made = api.post("/tokens", {"name": "ci-bot", "role": "ci"})

    assert made.status_code == 201
    body = made.get_json()
    secret = body["secret"]
    assert secret.startswith("mr_") and len(secret) >= 40
    assert body["prefix"] == secret[: len(body["prefix"])] and len(body["prefix"]) < 12
    for path in ("/tokens", f"/tokens/{body['id']}"):
        got = api.get(path)
        assert got.status_code == 200
        assert secret not in got.get_data(as_text=True)
    assert all("secret" not in t for t in api.get("/tokens").get_json()["items"])
    assert "secret" not in api.get(f"/tokens/{body['id']}").get_json()
    with app.extensions["modelreg"].db.unit_of_work(write=False) as session:
        row = session.execute(select(ApiToken.__table__).where(ApiToken.id == body["id"])).one()
    assert secret not in [value for value in row if isinstance(value, str)]
    assert not any(isinstance(v, str) and len(v) > 12 and v in secret for v in row)
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()


def test_token_names_are_unique_roles_are_known_and_expiries_lie_ahead(api: Api) -> None:
    assert api.post("/tokens", {"name": "deployer", "role": "release"}).status_code == 201
    assert_error(api.post("/tokens", {"name": "deployer", "role": "ci"}), 409, "already_exists")
    assert_error(api.post("/tokens", {"name": "DEPLOYER", "role": "ci"}), 409, "already_exists")
    for role in ("root", "Admin", "", None):
        got = api.post("/tokens", {"name": "x", "role": role})
        assert_error(got, 422, "validation_error", "role")
    for when in ("2001-01-01T00:00:00Z", "2020-06-01T12:00:00+02:00"):
        got = api.post("/tokens", {"name": "old", "role": "reader", "expires_at": when})
        assert_error(got, 422, "validation_error", "expires_at")
    got = api.post("/tokens", {"name": "naive", "role": "reader", "expires_at": "2999-01-01T00:00"})
    assert_error(got, 422, "validation_error", "expires_at")
    names = [t["name"] for t in api.get("/tokens").get_json()["items"]]
    assert names == ["deployer"]


def test_revoking_an_unknown_token_is_404(api: Api) -> None:
    assert_error(api.delete("/tokens/999999"), 404, "not_found")


# -- the ways in without a token ---------------------------------------------------------


def _cli_env(data_dir: Path, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "MODELREG_DATA_DIR": str(data_dir),
        "MODELREG_DATABASE_URL": None,
        "MODELREG_ARTIFACT_ROOT": None,
        "MODELREG_ADMIN_TOKEN": None,
        "MODELREG_CONFIG": None,
        "MODELREG_INSECURE_NO_AUTH": None,
        "MODELREG_HOST": None,
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])
def test_serve_without_auth_on_a_non_loopback_address_exits_before_starting(
    tmp_path: Path, host: str
) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--insecure-no-auth", "--host", host], env=_cli_env(tmp_path)
    )

    assert result.exit_code != 0
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "--insecure-no-auth" in message and "loopback" in message and host in message
    assert "Traceback" not in message and "serving on" not in message
    assert not (tmp_path / "modelreg.db").exists()  # refused before touching the database


def test_insecure_no_auth_from_the_environment_is_refused_off_loopback_too(tmp_path: Path) -> None:
    env = _cli_env(tmp_path, MODELREG_INSECURE_NO_AUTH="true", MODELREG_HOST="0.0.0.0")

    result = CliRunner().invoke(main, ["serve"], env=env)

    assert result.exit_code != 0
    assert "loopback" in result.output


def test_an_app_without_auth_answers_every_caller_as_an_admin(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        environ={},
        data_dir=str(tmp_path / "d"),
        database_url=database_url,
        artifact_root=str(tmp_path / "a"),
        insecure_no_auth=True,
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/api/v1/models").status_code == 200
        made = client.post("/api/v1/models", json={"name": "open"})
        assert made.status_code == 201, made.get_json()
        assert client.post("/api/v1/tokens", json={"name": "t", "role": "ci"}).status_code == 201
    finally:
        app.extensions["modelreg"].db.dispose()


def test_token_commands_work_offline_and_their_secret_opens_the_api(tmp_path: Path) -> None:
    runner = CliRunner()
    env = _cli_env(tmp_path)

    created = runner.invoke(main, ["token", "create", "--name", "ci-bot", "--role", "ci"], env=env)

    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("mr_") and "\n" not in secret
    assert "shown once" in created.stderr and secret not in created.stderr
    listed = runner.invoke(main, ["token", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "ci-bot" in listed.stdout and "\tci\tactive\t" in listed.stdout
    assert secret not in listed.stdout

    settings = load_settings(environ={}, data_dir=str(tmp_path))
    assert migrate.is_up_to_date(settings.resolved_database_url)
    app = create_app(settings)
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {secret}"}
        assert client.get("/api/v1/models", headers=headers).status_code == 200
        assert client.post("/api/v1/models", json={"name": "m"}, headers=headers).status_code == 201
        assert_error(client.get("/api/v1/tokens", headers=headers), 403, "forbidden")

        token_id = listed.stdout.split("\t", 1)[0]
        revoked = runner.invoke(main, ["token", "revoke", token_id], env=env)
        assert revoked.exit_code == 0, revoked.output
        _unauthenticated(client.get("/api/v1/models", headers=headers), "revoked offline")
        assert "\trevoked\t" in runner.invoke(main, ["token", "list"], env=env).stdout
    finally:
        app.extensions["modelreg"].db.dispose()

    again = runner.invoke(main, ["token", "create", "--name", "CI-BOT", "--role", "ci"], env=env)
    assert again.exit_code != 0 and "exists" in again.output
    unknown = runner.invoke(main, ["token", "revoke", "999"], env=env)
    assert unknown.exit_code != 0 and "not found" in unknown.output


def test_a_required_role_that_is_not_a_role_is_never_granted() -> None:
    # An undeclared endpoint needs admin: forgetting a route never opens it.
    assert required_role("nowhere.View", "GET") == "admin"
    assert all(
        method in ("GET", "POST", "PUT", "PATCH", "DELETE") and role in ROLES
        for methods in ROUTE_ROLES.values()
        for method, role in methods.items()
    )


# -- the external test set stays external ----------------------------------------------


def test_only_an_admin_downloads_a_test_sets_labels_the_others_see_its_shape(
    api: Api, as_role: ROLE_HEADERS
) -> None:
    from tests.integration.test_dataset_content import upload, wine_csv

    content = wine_csv()
    assert upload(api, content).status_code == 201
    path = "/datasets/wine-holdout/revisions/1"

    for role in ("reader", "ci", "release"):
        refused = api.get(f"{path}/content", headers=as_role[role])
        assert_error(refused, 403, "forbidden")
        assert api.client.head(f"/api/v1{path}/content", headers=as_role[role]).status_code == 403
        revision = api.get(path, headers=as_role[role]).get_json()
        assert revision["sha256"] == hashlib.sha256(content).hexdigest()
        assert revision["row_count"] == 178
        assert revision["columns"][-1] == "target" and len(revision["columns"]) == 14
    assert api.get(f"{path}/content", headers=as_role["admin"]).data == content


def test_a_job_record_shows_the_models_output_to_admins_only(
    app: Flask, api: Api, as_role: ROLE_HEADERS
) -> None:
    from modelreg.db.models import Job
    from tests.integration.test_dataset_content import upload, wine_csv

    assert upload(api, wine_csv()).status_code == 201
    api.post("/models", {"name": "m"})
    create_version(api, "m", "1.0")
    run = api.upload_run("m", "1.0", b"not a model").get_json()
    job = api.post(f"/runs/{run['id']}/evaluate", {"dataset": "wine-holdout"}).get_json()
    leaky = "DATABASE_URL=postgresql://app:hunter2@db/prod in /srv/modelreg/data/holdout.csv"
    with app.extensions["modelreg"].db.unit_of_work() as session:
        session.execute(
            update(Job)
            .where(Job.id == job["id"])
            .values(
                state="failed",
                error=f"the model raised: {leaky} token=mr_0123456789abcdef",
                result={
                    "exit_code": 1,
                    "seconds": 0.5,
                    "output_tail": f"print: {leaky}",
                    "traceback": 'File "/srv/modelreg/x.py", line 3',
                    "skipped": {"roc_auc": f"failed reading {leaky}"},
                },
            )
        )
        session.commit()

    for role in ("reader", "ci", "release"):
        shown = api.get(f"/jobs/{job['id']}", headers=as_role[role]).get_json()
        listed = api.get("/jobs", headers=as_role[role]).get_json()["items"][0]
        for record in (shown, listed):
            assert set(record["result"]) == {"exit_code", "seconds", "skipped"}
            text = json.dumps(record)
            for secret in ("hunter2", "mr_0123456789abcdef", "/srv/modelreg", "holdout.csv"):
                assert secret not in text, (role, secret, text)
            assert record["error"].startswith("the model raised:")
    full = api.get(f"/jobs/{job['id']}", headers=as_role["admin"]).get_json()
    assert full["result"]["output_tail"] == f"print: {leaky}"
    assert "hunter2" in full["error"]
