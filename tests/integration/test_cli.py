"""The `modelreg db` commands against real databases."""

from __future__ import annotations

from click.testing import CliRunner

from modelreg.cli.main import main
from modelreg.db import migrate


def test_db_current_reports_the_head_revision_of_a_migrated_database(
    fresh_database_url: str,
) -> None:
    result = CliRunner().invoke(
        main, ["db", "current"], env={"MODELREG_DATABASE_URL": fresh_database_url}
    )

    assert result.exit_code == 0, result.output
    assert f"current: {migrate.head_revision()}" in result.output


def test_db_downgrade_to_base_then_upgrade_restores_the_schema(fresh_database_url: str) -> None:
    env = {"MODELREG_DATABASE_URL": fresh_database_url}
    runner = CliRunner()

    assert runner.invoke(main, ["db", "downgrade", "base"], env=env).exit_code == 0
    assert "current: None" in runner.invoke(main, ["db", "current"], env=env).output
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    assert migrate.is_up_to_date(fresh_database_url)


def test_an_unreachable_database_is_a_one_line_error_without_the_password() -> None:
    url = "postgresql+psycopg2://postgres:s3cret@127.0.0.1:5432/modelreg_does_not_exist"

    result = CliRunner().invoke(main, ["db", "current"], env={"MODELREG_DATABASE_URL": url})

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "modelreg_does_not_exist" in result.output
    assert "s3cret" not in result.output
