"""Settings precedence: packaged defaults < MODELREG_CONFIG file < MODELREG_* < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.config import load_settings
from modelreg.errors import ConfigError


def test_with_nothing_set_data_lives_in_modelreg_data_of_the_working_directory() -> None:
    settings = load_settings(environ={})

    assert (
        settings.resolved_database_url == f"sqlite:///{Path('modelreg-data').resolve()}/modelreg.db"
    )
    assert settings.resolved_artifact_root == Path("modelreg-data").resolve() / "artifacts"
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)


def test_environment_variables_override_a_config_file_which_overrides_the_defaults(
    tmp_path: Path,
) -> None:
    config = tmp_path / "modelreg.toml"
    config.write_text('port = 6000\nworkers = 8\ndata_dir = "/srv/reg"\n')

    settings = load_settings(environ={"MODELREG_CONFIG": str(config), "MODELREG_PORT": "7000"})

    assert (settings.port, settings.workers) == (7000, 8)
    assert settings.resolved_artifact_root == Path("/srv/reg/artifacts")


def test_keyword_overrides_win_over_the_environment() -> None:
    settings = load_settings(environ={"MODELREG_PORT": "7000"}, port=8000)

    assert settings.port == 8000


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [
        ({"MODELREG_PORT": "eighty"}, {}),
        ({}, {"databse_url": "sqlite://"}),
    ],
)
def test_a_misspelt_or_mistyped_setting_is_refused_not_ignored(
    environ: dict[str, str], overrides: dict[str, str]
) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ=environ, **overrides)


def test_an_unknown_key_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "modelreg.toml"
    config.write_text("prot = 1\n")

    with pytest.raises(ConfigError, match="prot"):
        load_settings(environ={"MODELREG_CONFIG": str(config)})


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("off", False)])
def test_boolean_settings_read_the_usual_spellings(raw: str, expected: bool) -> None:
    assert load_settings(environ={"MODELREG_ACCESS_LOG": raw}).access_log is expected


def test_the_access_log_is_off_unless_asked_for() -> None:
    assert load_settings(environ={}).access_log is False


def test_a_setting_may_come_from_a_file_named_by_its_file_variable(tmp_path: Path) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text("from-a-file-0123456789\n")

    settings = load_settings(environ={"MODELREG_ADMIN_TOKEN_FILE": str(secret)})

    assert settings.admin_token == "from-a-file-0123456789"
    with pytest.raises(ConfigError, match="not both"):
        load_settings(
            environ={"MODELREG_ADMIN_TOKEN_FILE": str(secret), "MODELREG_ADMIN_TOKEN": "x" * 20}
        )
    with pytest.raises(ConfigError, match="cannot read MODELREG_ADMIN_TOKEN_FILE"):
        load_settings(environ={"MODELREG_ADMIN_TOKEN_FILE": str(tmp_path / "missing")})


def test_the_admin_token_may_be_given_by_its_sha256_alone() -> None:
    import hashlib

    digest = hashlib.sha256(b"some-admin-token-0123").hexdigest()

    assert load_settings(environ={}, admin_token_sha256=digest).admin_token_digest == digest
    assert load_settings(environ={}, admin_token="some-admin-token-0123").admin_token_digest == (
        digest
    )
    with pytest.raises(ConfigError, match="admin_token_sha256"):
        load_settings(environ={}, admin_token_sha256="not-hex")


def test_evaluations_are_strictly_isolated_unless_the_process_level_is_chosen() -> None:
    assert load_settings(environ={}).evaluation_isolation == "strict"
    chosen = load_settings(environ={"MODELREG_EVALUATION_ISOLATION": "process"})
    assert chosen.evaluation_isolation == "process"
    with pytest.raises(ConfigError, match="evaluation_isolation"):
        load_settings(environ={"MODELREG_EVALUATION_ISOLATION": "none"})
