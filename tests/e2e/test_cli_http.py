"""The ``modelreg`` HTTP commands against a live ``modelreg serve``, on SQLite and PostgreSQL.

Most commands run in-process through click's ``CliRunner`` (the very ``main`` group the
console script runs) with ``MODELREG_URL`` / ``MODELREG_TOKEN`` set; exit statuses,
stderr and the demo run the real console script in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelreg.cli.main import main
from modelreg.client import Registry
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    Server,
    StartServer,
    clean_environ,
    free_port,
    launch,
)

pytestmark = pytest.mark.e2e

MODELREG = str(Path(sys.executable).with_name("modelreg"))
HOLDOUT_CSV = b"a,b,target\n1.0,2.0,0\n3.0,4.0,1\n5.0,6.0,0\n"


@dataclass
class Cli:
    """``modelreg …`` in-process, as the e2e admin (or ``token``) against ``url``."""

    url: str
    token: str = ADMIN_TOKEN

    def __call__(self, *args: Any, code: int = 0) -> Result:
        argv = [str(a) for a in args]
        env = {"MODELREG_URL": self.url, "MODELREG_TOKEN": self.token}
        result = CliRunner().invoke(main, argv, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"modelreg {' '.join(argv)} raised") from result.exception
        assert result.exit_code == code, (
            f"modelreg {' '.join(argv)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: Any) -> Any:
        return json.loads(self(*args, "--json").stdout)


def console(
    *args: str, url: str, token: str = ADMIN_TOKEN, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real console script, with only MODELREG_URL and MODELREG_TOKEN set."""
    env = clean_environ(admin_token=False, MODELREG_URL=url, MODELREG_TOKEN=token)
    return subprocess.run(
        [MODELREG, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), done.stderr


@pytest.fixture
def cli(server: Server) -> Cli:
    return Cli(server.url)


def artifact(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def setup_registry(cli: Cli, tmp_path: Path) -> dict[str, int]:
    """AImodel 1.0 (runs f1 0.80, 0.90) in Production, 2.0 (f1 0.95) in Staging → run ids.

    The artifacts are no models and the test set is registered by digest only, so the
    reported values are what selection has (on a revision with content the service's
    own evaluation would fail and exclude them)."""
    cli("datasets", "register", "holdout", hashlib.sha256(HOLDOUT_CSV).hexdigest())
    ids = {}
    for key, version, f1 in [("1.0a", "1.0", 0.8), ("1.0b", "1.0", 0.9), ("2.0", "2.0", 0.95)]:
        path = artifact(tmp_path, f"m-{key}.bin", f"model {key}".encode())
        run = cli.json(
            "register", "AImodel", version, path, "--metric", f"f1={f1}", "--dataset", "holdout"
        )
        ids[key] = run["id"]
    cli("stage", "AImodel", "1.0", "Staging")
    cli("stage", "AImodel", "1.0", "Production", "--reason", "release 1.0")
    cli("stage", "AImodel", "2.0", "Staging")
    return ids


def test_ci_registers_runs_in_one_command_and_people_read_them_as_tables_or_json(
    cli: Cli, tmp_path: Path
) -> None:
    holdout = cli.json(
        "datasets",
        "upload",
        "holdout",
        artifact(tmp_path, "holdout.csv", HOLDOUT_CSV),
        "--target",
        "target",
        "--task",
        "classification",
        "--description",
        "three rows",
    )
    assert holdout["label"] == "holdout@1" and holdout["has_content"] is True

    model = artifact(tmp_path, "rf.joblib", b"not really a forest")
    run = cli.json(
        "register",
        "AImodel",
        "1.0",
        model,
        "--param",
        "n_estimators=100",
        "--param",
        "max_features=sqrt",
        "--tag",
        "team=ml",
        "--source",
        "git_commit=4f2a",
        "--metric",
        "f1=0.91",
        "--dataset",
        "holdout",
    )
    assert (run["model"], run["version"], run["number"]) == ("AImodel", "1.0", 1)
    assert run["params"] == {"n_estimators": 100, "max_features": "sqrt"}
    assert run["tags"] == {"team": "ml"} and run["source"] == {"git_commit": "4f2a"}
    assert run["artifact"]["sha256"] == hashlib.sha256(b"not really a forest").hexdigest()
    assert cli.json("register", "AImodel", "1.0.0", model)["number"] == 2  # 1.0.0 is 1.0
    human = cli("register", "AImodel", "1.0", model).stdout
    assert re.match(r"run \d+: AImodel 1\.0 #3, sha256 [0-9a-f]{12}", human), human

    cli("models", "create", "Other", "--description", "another model")
    assert [m["name"] for m in cli.json("models", "list")["items"]] == ["AImodel", "Other"]
    listing = cli("models", "list").stdout.splitlines()
    assert listing[0].split() == ["name", "versions", "created", "description"]
    assert listing[2].split()[0] == "Other" and listing[2].endswith("another model")
    assert "1.0" in cli("models", "show", "AImodel").stdout
    assert cli.json("models", "show", "AImodel")["versions"][0]["version"] == "1.0"

    created = cli("versions", "create", "AImodel", "2.0", "--description", "new features")
    assert created.stderr == ""
    normalized = cli("versions", "create", "AImodel", "v3")
    assert normalized.stderr == "notice: version v3 is stored as 3 (PEP 440 normal form)\n"
    assert normalized.stdout == "AImodel 3 registered (stage None)\n"
    assert cli.json("versions", "create", "AImodel", "V4.0-RC1")["normalized_from"] == "V4.0-RC1"
    assert [v["version"] for v in cli.json("versions", "list", "AImodel")["items"]] == [
        "1.0",
        "2.0",
        "3",
        "4.0rc1",
    ]
    assert cli.json("versions", "list", "AImodel", "--spec", ">1.0")["items"][0]["version"] == "2.0"
    gone = cli("versions", "delete", "AImodel", "4.0rc1", "--reason", "a typo")
    assert gone.stdout == "AImodel 4.0rc1 removed\nno champion changed\n"
    refused = cli("versions", "delete", "AImodel", "1.0", "--reason", "x", code=1)
    assert refused.stderr.startswith("error: 409 conflict: AImodel 1.0 has 3 run(s); send force")
    assert "4.0rc1" not in [v["version"] for v in cli.json("versions", "list", "AImodel")["items"]]
    assert cli.json("versions", "show", "AImodel", "2.0.0")["description"] == "new features"

    created = cli.json(
        "runs",
        "create",
        "AImodel",
        "2.0",
        model,
        "--metric",
        "f1=0.95",
        "--dataset",
        "holdout@1",
        "--format",
        "joblib",
    )
    assert (created["version"], created["number"], created["artifact"]["format"]) == (
        "2.0",
        1,
        "joblib",
    )
    assert len(cli.json("runs", "list", "AImodel")["items"]) == 4
    assert len(cli.json("runs", "list", "AImodel", "1.0")["items"]) == 3
    shown = cli.json("runs", "show", run["id"])
    assert [(e["dataset"], e["metric"], e["value"], e["source"]) for e in shown["evaluations"]] == [
        ("holdout@1", "f1", 0.91, "reported")
    ]
    text = cli("runs", "show", run["id"]).stdout
    assert run["artifact"]["sha256"] in text and "n_estimators=100" in text

    digest = cli.json("datasets", "register", "reported-only", "ab" * 32)
    assert (digest["label"], digest["has_content"]) == ("reported-only@1", False)
    assert [d["name"] for d in cli.json("datasets", "list")["items"]] == [
        "holdout",
        "reported-only",
    ]
    assert "holdout@1" in cli("datasets", "show", "holdout").stdout

    # Errors: one line on stderr, exit 1; usage errors exit 2.
    missing = cli("runs", "create", "AImodel", "9.0", model, code=1)
    assert missing.stderr.startswith("error: 404 not_found:") and missing.stdout == ""
    assert (
        "--dataset" in cli("register", "AImodel", "1.0", model, "--metric", "f1=1", code=2).stderr
    )
    assert "KEY=VALUE" in cli("register", "AImodel", "1.0", model, "--param", "x", code=2).stderr
    cli("register", "AImodel", "1.0", tmp_path / "missing.joblib", code=2)


def columns(line: str) -> list[str]:
    """The cells of a plain table line: at least two spaces apart."""
    return re.split(r"\s{2,}", line.strip())


def test_runs_list_shows_each_runs_metrics_with_the_policys_metric_first_and_few_columns(
    cli: Cli, server: Server, tmp_path: Path
) -> None:
    cli("datasets", "register", "holdout", hashlib.sha256(HOLDOUT_CSV).hexdigest())
    scores = {"accuracy": 0.91, "f1": 0.9, "log_loss": 0.3, "precision": 0.89, "recall": 0.88}
    reported = ["--dataset", "holdout", *(f"--metric={k}={v}" for k, v in scores.items())]
    first = cli.json("register", "AImodel", "1.0", artifact(tmp_path, "a.bin", b"a"), *reported)
    bare = cli.json("register", "AImodel", "1.0", artifact(tmp_path, "b.bin", b"b"))
    cli("env", "put", "PROD")
    cli("policy", "set", "PROD", "AImodel", "--metric", "recall", "--dataset", "holdout",
        "--stages", "None", "--reason", "recall matters")  # fmt: skip

    listed = cli("runs", "list", "AImodel")
    assert "\x1b" not in listed.stdout  # not a terminal: plain text
    header, *rows = (columns(line) for line in listed.stdout.splitlines())
    metrics = [h for h in header if h.endswith("(reported)")]
    assert metrics == [  # the policy's metric first, then the others, four at most
        "recall holdout@1 (reported)",
        "accuracy holdout@1 (reported)",
        "f1 holdout@1 (reported)",
        "log_loss holdout@1 (reported)",
    ]
    by_run = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert by_run[str(first["id"])]["recall holdout@1 (reported)"] == "0.88"
    assert by_run[str(first["id"])]["log_loss holdout@1 (reported)"] == "0.3"
    assert by_run[str(bare["id"])]["recall holdout@1 (reported)"] == "-"
    assert listed.stderr.strip() == (
        "note: 1 more metric column(s) (precision): choose with --metric NAME"
    )

    chosen = cli("runs", "list", "AImodel", "1.0", "--metric", "precision", "--metric", "f1")
    header, *rows = (columns(line) for line in chosen.stdout.splitlines())
    assert [h for h in header if "holdout" in h] == [
        "precision holdout@1 (reported)",
        "f1 holdout@1 (reported)",
    ]
    assert rows[0][header.index("precision holdout@1 (reported)")] == "0.89"
    assert chosen.stderr == ""
    typo = cli("runs", "list", "AImodel", "--metric", "f2")
    assert typo.stderr.strip() == "note: no run has a metric named f2"

    # --json: the runs exactly as the API lists them, whatever --metric says.
    api = server.expect(server.session.get(server.api("/models/AImodel/versions/1.0/runs")), 200)
    assert cli.json("runs", "list", "AImodel", "1.0", "--metric", "f1") == {"items": api["items"]}


def test_a_release_engineer_promotes_widens_pins_and_pulls_from_the_command_line(
    cli: Cli, tmp_path: Path
) -> None:
    ids = setup_registry(cli, tmp_path)
    cli("env", "put", "PROD", "--description", "production")
    cli("env", "put", "INT")
    prod = cli.json(
        "policy",
        "set",
        "PROD",
        "AImodel",
        "--versions",
        "<=1.0",
        "--stages",
        "Production",
        "--metric",
        "f1",
        "--dataset",
        "holdout",
        "--reason",
        "PROD serves 1.x",
    )
    assert (prod["revision"], prod["dataset"], prod["champion"]["run_id"]) == (
        1,
        "holdout@1",
        ids["1.0b"],
    )
    out = cli(
        "policy",
        "set",
        "INT",
        "AImodel",
        "--versions",
        "<=2.0",
        "--stages",
        "Staging,Production",
        "--metric",
        "f1",
        "--dataset",
        "holdout",
        "--reason",
        "INT tries 2.0",
    ).stdout
    assert out.splitlines()[0] == "INT/AImodel: new policy, revision 1"
    assert f"champion now: run {ids['2.0']} (AImodel 2.0 #1, f1 0.95)" in out

    assert cli.json("champion", "PROD", "AImodel")["run_id"] == ids["1.0b"]
    assert cli.json("champion", "INT", "AImodel")["run_id"] == ids["2.0"]
    assert "run number       2" in cli("champion", "PROD", "AImodel").stdout
    explained = cli.json("champion", "PROD", "AImodel", "--explain")
    assert explained["champion"]["run_id"] == ids["1.0b"]
    out_of_range = {c["run_id"]: c["reasons"] for c in explained["explain"]["candidates"]}
    assert out_of_range[ids["2.0"]] == ["version_out_of_range", "stage_not_allowed"]
    table = cli("champion", "PROD", "AImodel", "--explain").stdout
    assert "version_out_of_range, stage_not_allowed" in table
    envs = cli.json("env", "list")["items"]
    assert {e["name"]: len(e["champions"]) for e in envs} == {"INT": 1, "PROD": 1}
    assert cli.json("env", "show", "PROD")["description"] == "production"
    assert cli.json("policy", "get", "PROD", "AImodel")["versions"] == "<=1.0"

    # 2.0 reaches Production; plan the widening, then do it (If-Match from the read).
    assert cli.json("policy", "plan", "PROD", "AImodel", "--versions", "<=2.0")["changes"] is False
    moved = cli.json(
        "stage",
        "AImodel",
        "2.0",
        "Production",
        "--reason",
        "release 2.0",
        "--from-stage",
        "Staging",
    )
    assert moved["version"]["stage"] == "Production"
    cli("stage", "AImodel", "2.0", "Archived", "--from-stage", "Staging", code=1)
    plan = cli.json("policy", "plan", "PROD", "AImodel", "--versions", "<=2.0")
    assert (plan["changes"], plan["proposed"]["run_id"]) == (True, ids["2.0"])
    planned = cli("policy", "plan", "PROD", "AImodel", "--versions", "<=2.0").stdout
    assert '  versions: "<=1.0" → "<=2.0"' in planned and f"→ run {ids['2.0']} " in planned
    widened = cli.json(
        "policy", "set", "PROD", "AImodel", "--versions", "<=2.0", "--reason", "2.0 is released"
    )
    assert (widened["revision"], widened["stages"], widened["champion"]["run_id"]) == (
        2,
        ["Production"],
        ids["2.0"],
    )
    stale = cli(
        "policy",
        "set",
        "PROD",
        "AImodel",
        "--versions",
        "<=1.0",
        "--reason",
        "stale",
        "--if-match",
        "1",
        code=1,
    )
    assert stale.stderr.startswith("error: 412 precondition_failed:")
    same = cli("policy", "set", "PROD", "AImodel", "--versions", "<=2.0", "--reason", "again")
    assert same.stdout.strip() == "PROD/AImodel: no change (revision 2)"
    cli("policy", "set", "PROD", "AImodel", "--versions", "<=one", "--reason", "x", code=2)
    cli("policy", "set", "QA", "AImodel", "--metric", "f1", "--reason", "x", code=1)  # no env

    history = cli.json("history", "PROD", "AImodel")["items"]
    assert [(h["from_run_id"], h["to_run_id"]) for h in history] == [
        (ids["1.0b"], ids["2.0"]),
        (None, ids["1.0b"]),
    ]
    assert "2.0 is released" in cli("history", "PROD", "AImodel").stdout

    # Rollback by pin, pull what is served (verified), unpin.
    pinned = cli.json("pin", "PROD", "AImodel", ids["1.0a"], "--reason", "rollback")
    assert pinned["champion"]["run_id"] == ids["1.0a"]
    assert cli.json("champion", "PROD", "AImodel")["reason"] == "pinned"
    assert [
        (p["model"], p["run_id"], p["reason"]) for p in cli.json("env", "show", "PROD")["pins"]
    ] == [("AImodel", ids["1.0a"], "rollback")]
    shown = cli("env", "show", "PROD").stdout.splitlines()
    assert shown[3].endswith("pinned run  pin reason")  # after the header pairs and a gap
    assert shown[4].split()[-2:] == [str(ids["1.0a"]), "rollback"]
    target = tmp_path / "served" / "model.bin"
    pulled = cli.json("pull", "PROD", "AImodel", "-o", target)
    assert target.read_bytes() == b"model 1.0a"
    assert (
        pulled["sha256"]
        == hashlib.sha256(b"model 1.0a").hexdigest()
        == pulled["champion"]["artifact"]["sha256"]
    )
    unpinned = cli("unpin", "PROD", "AImodel", "--reason", "fixed").stdout
    assert unpinned.strip() == f"PROD serves run {ids['2.0']} (AImodel 2.0 #1, f1 0.95)"
    assert cli.json("env", "show", "PROD")["pins"] == []
    cli("pin", "PROD", "AImodel", ids["1.0a"], code=2)  # --reason is required

    deleted = cli.json("runs", "delete", ids["1.0a"], "--reason", "bad data")
    assert [c["after"] for c in deleted["champions"] if c["changed"]] == []
    assert cli.json("champion", "PROD", "AImodel")["run_id"] == ids["2.0"]
    cli("runs", "show", ids["1.0a"], code=1)

    # Withdrawing 2.0 with its run: both environments fall back to 1.0's run.
    cli("versions", "delete", "AImodel", "2.0", "--reason", "withdrawn", code=1)  # has a run
    withdrawn = cli.json("versions", "delete", "AImodel", "2.0", "--reason", "withdrawn", "--force")
    assert sorted((c["environment"], c["before"], c["after"]) for c in withdrawn["champions"]) == [
        ("INT", ids["2.0"], ids["1.0b"]),
        ("PROD", ids["2.0"], ids["1.0b"]),
    ]
    cli("runs", "show", ids["2.0"], code=1)


def test_pull_writes_only_bytes_that_match_the_champions_sha256(
    cli: Cli, server: Server, tmp_path: Path
) -> None:
    ids = setup_registry(cli, tmp_path)
    cli("env", "put", "PROD")
    cli(
        "policy",
        "set",
        "PROD",
        "AImodel",
        "--versions",
        "<=1.0",
        "--stages",
        "Production",
        "--metric",
        "f1",
        "--dataset",
        "holdout",
        "--reason",
        "r",
    )
    out = tmp_path / "prod.bin"
    text = cli("pull", "PROD", "AImodel", "-o", out).stdout
    digest = hashlib.sha256(b"model 1.0b").hexdigest()
    assert out.read_bytes() == b"model 1.0b" and f"sha256 {digest[:12]} verified" in text
    assert f"run {ids['1.0b']} " in text

    # The stored blob is altered behind the service's back: the service refuses to serve
    # it (the client would refuse bytes that do not match, too), and nothing is written.
    blob = server.artifact_root / "sha256" / digest[:2] / digest[2:4] / digest
    assert blob.is_file(), sorted(p.name for p in server.artifact_root.rglob("*"))
    blob.chmod(0o644)
    blob.write_bytes(b"model 1.0X")
    tampered = tmp_path / "tampered.bin"
    failed = cli("pull", "PROD", "AImodel", "-o", tampered, code=1)
    assert failed.stderr.startswith("error: 503 unavailable: the stored copy of these bytes")
    assert not tampered.exists()
    assert not list(tmp_path.glob(".part-*"))

    cli("pull", "INT", "AImodel", "-o", out, code=1)  # no such environment
    cli("pull", "PROD", "AImodel", code=2)  # -o is required


def write_policies(path: Path, prod_versions: str = "<=1.0", extra: str = "") -> Path:
    path.write_text(
        f"""
[environments.PROD.AImodel]
versions = "{prod_versions}"
stages = ["Production"]
metric = "f1"
dataset = "holdout"
{extra}
[environments.INT]
description = "integration"

[environments.INT.AImodel]
versions = "<=2.0"
stages = ["Production", "Staging"]   # any order: the same policy as Staging, Production
metric = "f1"
dataset = "holdout@1"
"""
    )
    return path


def policy_puts(registry: Registry) -> int:
    return len(registry.audit(action="policy.put"))


def test_policy_apply_shows_the_diff_applies_it_once_and_then_says_no_change(
    cli: Cli, server: Server, tmp_path: Path
) -> None:
    ids = setup_registry(cli, tmp_path)
    cli("env", "put", "PROD")
    registry = Registry(server.url, ADMIN_TOKEN)
    file = write_policies(tmp_path / "policies.toml")

    dry = cli("policy", "apply", file, "--dry-run").stdout
    assert dry.splitlines() == [
        'environment INT: create → "integration"',
        "PROD/AImodel: new policy",
        '  versions: "<=1.0"',
        '  stages: ["Production"]',
        '  metric: "f1"',
        '  dataset: "holdout@1"',
        '  direction: "max"',
        "  min_value: null",
        "  min_improvement: 0.0",
        "  allow_prereleases: false",
        f"  champion: none → run {ids['1.0b']} (AImodel 1.0 #2, f1 0.9)",
        "  eligible runs: 2",
        "INT/AImodel: new policy",
        '  versions: "<=2.0"',
        '  stages: ["Staging", "Production"]',
        '  metric: "f1"',
        '  dataset: "holdout@1"',
        '  direction: "max"',
        "  min_value: null",
        "  min_improvement: 0.0",
        "  allow_prereleases: false",
        "  champion: none → chosen once environment INT exists",
        "dry run, nothing applied: 2 created, 0 updated, 0 unchanged",
    ]
    assert policy_puts(registry) == 0
    assert [e.name for e in registry.environments()] == ["PROD"]

    applied = cli("policy", "apply", file, "--reason", "policies as code").stdout
    assert applied.splitlines()[-1] == "applied: 2 created, 0 updated, 0 unchanged"
    assert registry.champion("PROD", "AImodel").run_id == ids["1.0b"]
    assert registry.champion("INT", "AImodel").run_id == ids["2.0"]
    assert registry.environment("INT").description == "integration"
    assert policy_puts(registry) == 2
    audit_rows = len(registry.audit())

    again = cli("policy", "apply", file, "--reason", "policies as code").stdout
    assert again.splitlines() == [
        "PROD/AImodel: no change (revision 1)",
        "INT/AImodel: no change (revision 1)",
        "applied: 0 created, 0 updated, 2 unchanged",
    ]
    assert len(registry.audit()) == audit_rows  # not a single write
    assert [registry.policy(e, "AImodel").revision for e in ("PROD", "INT")] == [1, 1]

    # Widening PROD (2.0 in Production first): the diff and the champion it moves.
    registry.transition("AImodel", "2.0", "Production", reason="release 2.0")
    write_policies(file, "<=2.0")
    dry = cli("policy", "apply", file, "--dry-run").stdout.splitlines()
    assert dry[:3] == [
        "PROD/AImodel: revision 1 → 2",
        '  versions: "<=1.0" → "<=2.0"',
        f"  champion: run {ids['1.0b']} (AImodel 1.0 #2, f1 0.9) → "
        f"run {ids['2.0']} (AImodel 2.0 #1, f1 0.95)",
    ]
    assert registry.policy("PROD", "AImodel").revision == 1
    result = cli.json("policy", "apply", file, "--reason", "2.0 is released")
    prod, other = result["policies"]
    assert (prod["action"], prod["changes"], prod["policy"]["revision"]) == (
        "update",
        {"versions": ["<=1.0", "<=2.0"]},
        2,
    )
    assert prod["plan"]["proposed"]["run_id"] == ids["2.0"] and other["action"] == "unchanged"
    assert registry.champion("PROD", "AImodel").run_id == ids["2.0"]
    assert policy_puts(registry) == 3

    # A policy that would leave PROD with nothing is refused before any write.
    write_policies(file, "<=0.5", extra="min_value = 0.5")
    refused = cli("policy", "apply", file, "--reason", "oops", code=1)
    assert "PROD/AImodel would leave no model to serve; pass --force" in refused.stderr
    assert registry.policy("PROD", "AImodel").revision == 2 and policy_puts(registry) == 3

    # The file's shape and values are checked before the registry is asked anything.
    bad = tmp_path / "bad.toml"
    bad.write_text('[environments.PROD.AImodel]\nversion = "<=1.0"\n')
    wrong = cli("policy", "apply", bad, "--dry-run", code=2)
    assert "unknown key 'version'" in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    bad.write_text('[environments.PROD.AImodel]\nstages=["Live"]\nmetric="f1"\ndataset="holdout"\n')
    assert "stages: unknown stage" in cli("policy", "apply", bad, "--dry-run", code=2).stderr
    bad.write_text("[environments.PROD.AImodel\n")
    assert "not valid TOML" in cli("policy", "apply", bad, "--dry-run", code=2).stderr
    cli("policy", "apply", file, code=2)  # --reason is required without --dry-run
    write_policies(file).write_text(file.read_text().replace("AImodel", "Unknown"))
    missing = cli("policy", "apply", file, "--reason", "x", code=1)
    assert missing.stderr.startswith("error: 404 not_found: model 'Unknown' not found")
    assert policy_puts(registry) == 3


def test_the_example_policies_file_is_valid() -> None:
    from modelreg.cli.policy_file import load

    spec = load(Path(__file__).resolve().parents[2] / "config" / "policies.example.toml")
    assert [
        (w.key, w.body["versions"], w.body["stages"], w.body.get("require_verified"))
        for w in spec.policies
    ] == [
        ("PROD/AImodel", "<=1.0", ["Production"], True),
        ("INT/AImodel", "<=2.0", ["Staging", "Production"], None),  # the server's default
    ]


def test_evaluate_waits_for_the_services_own_metric_and_jobs_show_it(
    start_server: StartServer, tmp_path: Path
) -> None:
    import joblib
    from sklearn.datasets import load_wine
    from sklearn.tree import DecisionTreeClassifier

    server = start_server(args=["--evaluation-worker"])  # also on PostgreSQL
    cli = Cli(server.url)
    x, y = load_wine(return_X_y=True, as_frame=True)
    holdout = tmp_path / "wine.csv"
    x.assign(target=y).to_csv(holdout, index=False)
    cli("datasets", "upload", "wine", holdout, "--target", "target", "--task", "classification")
    tree = tmp_path / "tree.joblib"
    joblib.dump(DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, y), tree)
    run = cli.json("register", "Tree", "1.0", tree)

    job = cli.json("evaluate", run["id"], "wine", "--wait", "--timeout", "120")
    assert job["state"] == "succeeded" and 0.5 < job["result"]["metrics"]["f1"] <= 1.0
    assert cli.json("jobs", "show", job["id"])["state"] == "succeeded"
    assert [j["id"] for j in cli.json("jobs", "list", "--run-id", run["id"])["items"]] == [
        job["id"]
    ]
    assert "succeeded" in cli("jobs", "list", "--state", "succeeded").stdout
    verified = [
        e
        for e in cli.json("runs", "show", run["id"])["evaluations"]
        if e["source"] == "verified" and e["metric"] == "f1"
    ]
    assert verified[0]["value"] == job["result"]["metrics"]["f1"]
    listed = cli("runs", "list", "Tree", "--metric", "f1")
    header, row = (columns(line) for line in listed.stdout.splitlines())
    assert row[header.index("f1 wine@1 (verified)")] == str(round(verified[0]["value"], 4))
    seven = cli("runs", "list", "Tree")  # every metric the service computes: a few shown
    assert len([h for h in columns(seven.stdout.splitlines()[0]) if "(verified)" in h]) == 4
    assert "more metric column(s)" in seven.stderr

    broken = cli.json("register", "Tree", "1.0", artifact(tmp_path, "x.joblib", b"garbage"))
    failed = cli("evaluate", broken["id"], "wine", "--wait", code=1)
    assert re.match(r"error: job \d+ failed: ", failed.stderr), failed.stderr


def test_evaluate_scores_a_whole_model_on_a_new_test_set_and_waits_for_every_job(
    start_server: StartServer, tmp_path: Path
) -> None:
    import joblib
    from sklearn.datasets import load_wine
    from sklearn.tree import DecisionTreeClassifier

    server = start_server(args=["--evaluation-worker"])  # also on PostgreSQL
    cli = Cli(server.url)
    x, y = load_wine(return_X_y=True, as_frame=True)
    first, second = tmp_path / "wine-1.csv", tmp_path / "wine-2.csv"
    x.assign(target=y).iloc[::2].to_csv(first, index=False)
    x.assign(target=y).iloc[1::2].to_csv(second, index=False)
    upload = ("datasets", "upload", "wine")
    cli(*upload, first, "--target", "target", "--task", "classification")
    runs = []
    for depth, version in [(1, "1.0"), (2, "1.0"), (3, "2.0")]:
        tree = tmp_path / f"tree-{depth}.joblib"
        joblib.dump(DecisionTreeClassifier(max_depth=depth, random_state=0).fit(x, y), tree)
        runs.append(cli.json("register", "Tree", version, tree)["id"])
    broken = cli.json("register", "Tree", "2.0", artifact(tmp_path, "x.joblib", b"garbage"))
    # The test set rotates: revision 2 arrives and every run is scored on it.
    cli(*upload, second, "--target", "target", "--task", "classification")

    only_1 = cli.json("evaluate", "Tree", "--dataset", "wine", "--versions", "<2", "--wait")
    assert (only_1["jobs"], only_1["dataset"], only_1["failed"]) == (2, "wine@2", [])
    done = cli("evaluate", "Tree", "--dataset", "wine@2", "--wait", code=1)
    assert "2 job(s) queued for Tree on wine@2" in done.stdout
    assert "2 job(s) finished, 1 failed" in done.stdout
    assert str(broken["id"]) in done.stdout and "failed" in done.stdout
    assert done.stderr.strip() == "error: 1 of 2 evaluation(s) failed"
    scored = {
        j["run_id"]: j["state"]
        for j in cli.json("jobs", "list")["items"]
        if j["dataset"] == "wine@2"
    }
    assert scored == {**{r: "succeeded" for r in runs}, broken["id"]: "failed"}

    again = cli("evaluate", "Tree", "--dataset", "wine@2", "--versions", "<2")
    assert "0 job(s) queued for Tree on wine@2; 2 run(s) already scored" in again.stdout
    cli("evaluate", "Tree", "wine@2", code=2)  # MODEL with a positional dataset: usage


def test_errors_are_one_line_on_stderr_with_status_1_and_usage_errors_status_2(
    server: Server,
) -> None:
    missing = console("champion", "PROD", "AImodel", url=server.url)
    assert missing.returncode == 1 and missing.stdout == ""
    one_error_line(missing, "error: 404 not_found: environment 'PROD' not found")
    as_json = console("models", "show", "Nope", "--json", url=server.url)
    assert as_json.returncode == 1
    one_error_line(as_json, "error: 404 not_found: model 'Nope' not found")

    down = console("models", "list", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1
    one_error_line(down, "error: cannot reach http://127.0.0.1:")
    assert down.stderr.strip().endswith("connection refused")

    # 401 and 403 say what to do at the command line, not which HTTP header to send.
    advice = (
        "set MODELREG_TOKEN or pass --token (create one with `modelreg token create` on the server)"
    )
    for token in ("not-a-token", ""):
        intruder = console("models", "list", url=server.url, token=token)
        assert intruder.returncode == 1
        one_error_line(intruder, "error: 401 unauthenticated: no token or a wrong token: ")
        assert intruder.stderr.strip().endswith(advice) and "Authorization" not in intruder.stderr
    reader = Cli(server.url, server.token("serving", "reader"))
    forbidden = reader("env", "put", "PROD", code=1)
    assert forbidden.stderr.strip() == (
        "error: 403 forbidden: this needs the 'release' role; the token 'serving' has "
        "'reader': pass a token with the 'release' role with --token or MODELREG_TOKEN "
        "(create one with `modelreg token create --name NAME --role release` on the server)"
    )

    for argv in (
        ["champion", "PROD"],
        ["champion", "PROD", "AImodel", "--bogus"],
        ["stage", "AImodel", "1.0", "Live"],
        ["runs", "show", "one"],
    ):
        usage = console(*argv, url=server.url)
        assert usage.returncode == 2, (argv, usage.stderr)
        assert "Traceback" not in usage.stderr and "Usage: modelreg" in usage.stderr

    # The offline commands are still there, beside the HTTP ones.
    listed = console("--help", url=server.url).stdout
    for name in ("serve", "worker", "token", "db", "champion", "policy", "pull", "demo"):
        assert re.search(rf"^  {name}\b", listed, re.M), listed


def printed_commands(out: str) -> list[list[str]]:
    """The ``modelreg …`` lines a demo printed for the user to paste, as argv."""
    return [shlex.split(line) for line in out.splitlines() if line.startswith("   modelreg ")]


def pasted(argv: list[str], *, token: str = "", cwd: Path | None = None) -> None:
    """Run a printed command as pasted (``modelreg`` is the console script), with only
    ``token`` in MODELREG_TOKEN and no MODELREG_URL: it must succeed."""
    assert argv[0] == "modelreg", argv
    done = console(*argv[1:], url="", token=token, cwd=cwd, timeout=120)
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}{done.stderr}"


def test_demo_runs_the_article_walkthrough_on_a_temporary_embedded_registry(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [MODELREG, "demo"],
        cwd=tmp_path,
        env=clean_environ(admin_token=False),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    prod = re.search(r"PROD serves run \d+ \(AImodel (\S+) #\d+, f1 ([0-9.]+)\)", out)
    integ = re.search(r"INT  serves run \d+ \(AImodel (\S+) #\d+, f1 ([0-9.]+)\)", out)
    assert prod and integ, out
    assert prod.group(1) == "1.0" and integ.group(1) == "2.0", out
    assert float(integ.group(2)) > float(prod.group(2))
    assert "f1 (verified)" in out and "version_out_of_range, stage_not_allowed" in out
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"
    assert list(tmp_path.iterdir()) == []  # the temporary registry is gone

    # How to keep a registry, as printed: serve it, run the demo into it, then what that
    # prints to try. Only the port moves off 5000, which another process may hold here.
    serve, into = printed_commands(out)
    assert serve[:2] == ["modelreg", "serve"] and into[:2] == ["modelreg", "demo"], out
    port = free_port()
    serve[serve.index("--port") + 1] = str(port)
    into = [a.replace(":5000", f":{port}") for a in into]
    base = tmp_path_factory.mktemp("kept")
    kept = launch(
        [MODELREG, *serve[1:]],
        cwd=base / "data",
        env=clean_environ(admin_token=False),
        port=port,
        log_path=base / "server.log",
    )
    try:
        demo = console(*into[1:], url="", token="", timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        tries = printed_commands(demo.stdout)
        assert [t[1] for t in tries] == ["runs", "champion", "policy"], tries
        assert not any("--token" in t for t in tries)  # --insecure-no-auth: none needed
        for argv in tries:
            pasted(argv)
    finally:
        kept.stop()


def test_demo_against_a_running_registry_registers_once_and_refuses_an_existing_model(
    server: Server,
) -> None:
    done = console("demo", "--url", server.url, "--reported", url="", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    registry = Registry(server.url, ADMIN_TOKEN)
    prod, integ = registry.champion("PROD", "AImodel"), registry.champion("INT", "AImodel")
    assert (prod.version, integ.version) == ("1.0", "2.0")
    assert f"PROD serves run {prod.run_id} (AImodel 1.0" in done.stdout
    # The token came from MODELREG_TOKEN: the lines to try read it from there too.
    assert "Next, try (with MODELREG_TOKEN set, as for this demo):" in done.stdout
    for argv in printed_commands(done.stdout):
        assert ADMIN_TOKEN not in argv and server.url in argv
        pasted(argv, token=ADMIN_TOKEN)

    again = console("demo", "--url", server.url, url="")
    assert again.returncode == 1
    one_error_line(again, f"error: model AImodel already exists at {server.url}")
    other = console(
        "demo", "--url", server.url, "--model", "Second", "--reported", "--token", ADMIN_TOKEN,
        url="", token="",
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert registry.champion("PROD", "Second").version == "1.0"
    # Given as --token, it is repeated where the lines need it.
    tries = printed_commands(other.stdout)
    assert len(tries) == 3 and all(t[t.index("--token") + 1] == ADMIN_TOKEN for t in tries)
    for argv in tries:
        pasted(argv)
