"""The README's commands and the examples, run as a newcomer would: as real processes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lakestore
from lakestore_cli.main import app

ROOT = Path(__file__).resolve().parent.parent


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "LAKESTORE_URI"}
    environment.update(env or {})
    return subprocess.run(
        args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def test_quickstart_then_query_from_the_shell(tmp_path: Path) -> None:
    done = _run([sys.executable, str(ROOT / "examples" / "quickstart.py")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lakestore-data" / "_lakestore.json").exists()
    query = "SELECT key, count(*) AS points FROM metrics GROUP BY key ORDER BY key"
    shown = _run(["lakestore", "query", query, "--format", "csv"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert list(csv.reader(io.StringIO(shown.stdout))) == [
        ["key", "points"], ["acc", "10"], ["f1", "10"], ["loss", "1000"]
    ]  # fmt: skip


@pytest.fixture
def logged_store(tmp_path: Path) -> str:
    uri = str(tmp_path / "store")
    with lakestore.start_run(store=uri, experiment="e", run_name="r") as run:
        run.log_param("lr", 0.1)
        run.log_metric("loss", float("nan"), step=1)
        run.log_metric("loss", 0.5, step=2)
    return uri


@pytest.mark.parametrize("output_format", ["table", "csv", "json"])
def test_query_prints_every_format(logged_store: str, output_format: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "query",
            "SELECT key, step, value FROM metrics ORDER BY step",
            "-s",
            logged_store,
            "-f",
            output_format,
        ],
    )
    assert result.exit_code == 0, result.output
    if output_format == "csv":
        assert list(csv.reader(io.StringIO(result.stdout))) == [
            ["key", "step", "value"], ["loss", "1", "nan"], ["loss", "2", "0.5"]
        ]  # fmt: skip
    elif output_format == "json":
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [row["step"] for row in rows] == [1, 2]
        assert rows[1] == {"key": "loss", "step": 2, "value": 0.5}
    else:
        assert "loss" in result.stdout
        assert "0.5" in result.stdout


def test_store_comes_from_the_environment(logged_store: str) -> None:
    result = CliRunner().invoke(
        app,
        ["query", "SELECT run_name FROM runs", "-f", "csv"],
        env={"LAKESTORE_URI": logged_store},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['"run_name"', '"r"']


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "SELECT * FROM nope"], "Table with name nope does not exist"),
        (["query", "SELEC 1"], "syntax error"),
        (["query", "SELECT 1 / 0 AS x, CAST('a' AS INTEGER)"], "Could not convert string 'a'"),
    ],
)
def test_query_errors_are_one_line_and_exit_non_zero(
    logged_store: str, args: list[str], message: str, tmp_path: Path
) -> None:
    done = _run(["lakestore", *args, "--store", logged_store], cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_query_on_a_missing_store_says_so(tmp_path: Path) -> None:
    done = _run(["lakestore", "query", "SELECT 1", "-s", str(tmp_path / "none")], cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: no lakestore store at")
    assert "Traceback" not in done.stderr


def test_sweep_example_then_direct_reads(tmp_path: Path) -> None:
    swept = _run([sys.executable, str(ROOT / "examples" / "sweep.py")], cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert "trial-" in swept.stdout
    with lakestore.connect(str(tmp_path / "lakestore-data")) as store:
        assert store.sql("SELECT count(*) FROM runs").fetchall() == [(51,)]
        children = store.sql("SELECT count(*) FROM runs WHERE parent_run_id IS NOT NULL")
        assert children.fetchall() == [(50,)]
    read = _run([sys.executable, str(ROOT / "examples" / "read_directly.py")], cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    assert "sweep-demo" in read.stdout
    assert "FINISHED" in read.stdout
    compacted = _run(["lakestore", "compact", "--grace", "0"], cwd=tmp_path)
    assert compacted.returncode == 0, compacted.stderr
    reread = _run([sys.executable, str(ROOT / "examples" / "read_directly.py")], cwd=tmp_path)
    assert reread.returncode == 0, reread.stderr
    assert reread.stdout == read.stdout  # the same rows, now from the parts


def test_s3_example_without_a_store_prints_its_usage(tmp_path: Path) -> None:
    done = _run([sys.executable, str(ROOT / "examples" / "log_to_s3.py")], cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "usage: python examples/log_to_s3.py s3://bucket/prefix\n"


def test_s3_example_against_the_loopback_endpoint(tmp_path: Path, s3_env: str) -> None:
    from tests.conftest import make_bucket

    uri = f"s3://{make_bucket(s3_env)}/team"
    done = _run([sys.executable, str(ROOT / "examples" / "log_to_s3.py"), uri], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "remote" in done.stdout
    assert "FINISHED" in done.stdout
