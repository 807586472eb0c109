"""Importing MLflow stores: every run, param, tag and metric point as MLflow reports it,
from its SQLite database and from an mlruns folder; importing again duplicates nothing."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lakestore
from lakestore.errors import ImportSourceError
from lakestore.importing import import_mlflow, import_trackio

mlflow = pytest.importorskip("mlflow", reason="MLflow is a test extra: pip install -e '.[test]'")

LOGGING = """
import math, sys
import mlflow

mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("vision")
with mlflow.start_run(run_name="sweep") as parent:
    for index, (lr, status) in enumerate([(0.1, "FINISHED"), (0.01, "FAILED"), (1e-3, "KILLED")]):
        with mlflow.start_run(run_name=f"lr={lr}", nested=True) as run:
            mlflow.log_params({"lr": lr, "model.name": "resnet", "long": "x" * 500})
            mlflow.set_tags({"team": "vision", "path/like": "a/b"})
            for step in range(50):
                mlflow.log_metric("loss", 1 / (step + 1 + index), step=step,
                                  timestamp=1_700_000_000_000 + 1000 * step)
            mlflow.log_metric("odd", [math.nan, math.inf, -math.inf][index], step=3)
            mlflow.log_metrics({"acc": 0.5, "acc_again": 0.5})
        if status != "FINISHED":
            mlflow.MlflowClient().set_terminated(run.info.run_id, status)
mlflow.set_experiment("scratch")
with mlflow.start_run(run_name="deleted") as gone:
    mlflow.log_metric("loss", 1.0)
mlflow.delete_run(gone.info.run_id)
with mlflow.start_run(run_name="kept"):
    mlflow.log_param("p", "v")
"""


@contextlib.contextmanager
def _mlflow_server(database: Path) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 over the SQLite ``database``; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{database}",
            "--default-artifact-root", str(database.parent / "artifacts"),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"mlflow server exited: {server.stderr.read()[-2000:]}")  # type: ignore[union-attr]
                if time.monotonic() > deadline:
                    pytest.fail("mlflow server did not answer in 180 s")
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _mlflow_store(folder: Path, kind: str) -> str:
    """An MLflow store of the runs LOGGING logs, of ``kind`` sqlite or files; its URI."""
    uri = {
        "sqlite": f"sqlite:///{folder / 'mlflow.db'}",
        "files": f"file://{folder / 'mlruns'}",
    }[kind]
    environment = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")
    subprocess.run(
        [sys.executable, "-c", LOGGING, uri], env=environment, check=True, capture_output=True,
        timeout=300,
    )  # fmt: skip
    return uri


def _import(uri: str, store: str) -> str:
    done = subprocess.run(
        ["lakestore", "import", "mlflow", uri, "--store", store],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr.strip()


@pytest.mark.parametrize("kind", ["sqlite", "files", "server"])
def test_an_mlflow_store_imports_as_mlflow_reports_it(tmp_path: Path, kind: str) -> None:
    with contextlib.ExitStack() as stack:
        uri = _mlflow_store(tmp_path, "sqlite" if kind == "server" else kind)
        if kind == "server":  # the same runs, served by a real MLflow server
            uri = stack.enter_context(_mlflow_server(tmp_path / "mlflow.db"))
        _check_import(uri, str(tmp_path / "lakestore"))


def _check_import(uri: str, store: str) -> None:
    said = _import(uri, store)
    assert said == (
        "imported 5 run(s), 159 metric point(s); 0 already in the store, "
        "1 deleted in MLflow left out"
    )
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    theirs = client.search_runs(list(experiments))
    assert len(theirs) == 5
    for run in theirs:
        ours = lakestore.get_run(run.info.run_id, store=store)
        info = run.info
        assert ours.experiment == experiments[info.experiment_id]
        assert (ours.run_name, ours.status, ours.user) == (info.run_name, info.status, info.user_id)
        assert _milliseconds(ours.start_time) == info.start_time
        assert _milliseconds(ours.end_time) == info.end_time
        assert ours.parent_run_id == run.data.tags.get("mlflow.parentRunId")
        assert ours.params == run.data.params
        assert ours.tags == run.data.tags
        assert sorted(ours.metrics) == sorted(run.data.metrics)
        for key in run.data.metrics:
            expected = [
                (m.step, m.timestamp, m.value) for m in client.get_metric_history(info.run_id, key)
            ]
            history = lakestore.get_metric_history(info.run_id, key, store=store)
            got = [
                (step, _milliseconds(moment), value)
                for step, moment, value in history.select("step", "timestamp", "value").fetchall()
            ]
            # repr: NaN matches NaN
            assert repr(sorted(got, key=repr)) == repr(sorted(expected, key=repr))
    # Again: nothing is duplicated.
    assert _import(uri, store).startswith("imported 0 run(s), 0 metric point(s); 5 already")
    with lakestore.connect(store) as opened:
        assert opened.sql("SELECT count(*) FROM metrics").fetchall() == [(159,)]
        assert opened.sql("SELECT count(*) FROM runs").fetchall() == [(5,)]


def _milliseconds(moment: Any) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("sqlite:////nowhere/mlflow.db", "no MLflow store at 'sqlite:////nowhere/mlflow.db'"),
        ("http://127.0.0.1:9", "cannot read the MLflow server at http://127.0.0.1:9"),
    ],
)
def test_a_source_that_is_not_an_mlflow_store_is_one_clear_error(
    tmp_path: Path, source: str, message: str
) -> None:
    environment = dict(os.environ, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    done = subprocess.run(
        ["lakestore", "import", "mlflow", source, "--store", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120, env=environment,
    )  # fmt: skip
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_mlflows_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"not a database at all" * 10)
    with pytest.raises(ImportSourceError, match="not an SQLite database"):
        import_mlflow(str(other), store=str(tmp_path / "s"))


TRACKIO_LOGGING = """
import math
import trackio

trackio.init(project="proj", name="first", config={"lr": 0.1, "layers": 3, "opt": "adam"})
for step in range(20):
    odd = [math.nan, math.inf, -math.inf][step % 3]
    trackio.log({"loss": 1 / (step + 1), "acc": 0.5, "odd": odd, "note": "text"}, step=step)
trackio.finish()
trackio.init(project="proj", name="second", config={"lr": 0.01, "schedule": [1, 2]})
trackio.log({"loss": 0.3})
trackio.log({"loss": 0.2})
trackio.finish()
"""


TRACKIO_READING = """
import json, math
from trackio.sqlite_storage import SQLiteStorage

def plain(value):  # JSON has no NaN or infinity: say them as Python does
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else value

reported = {}
for run_id, config in SQLiteStorage.get_all_run_configs("proj").items():
    logs = SQLiteStorage.get_logs("proj", run_id=run_id)
    reported[run_id] = [config, [{k: plain(v) for k, v in log.items()} for log in logs]]
print(json.dumps(reported))
"""


def test_a_trackio_project_imports_as_trackio_reports_it(tmp_path: Path) -> None:
    pytest.importorskip("trackio", reason="trackio is a test extra")
    environment = dict(os.environ, TRACKIO_DIR=str(tmp_path / "trackio"))
    subprocess.run(
        [sys.executable, "-c", TRACKIO_LOGGING], env=environment, check=True,
        capture_output=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    store = str(tmp_path / "lakestore")
    done = subprocess.run(
        ["lakestore", "import", "trackio", "--store", store],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith(
        "proj.db: imported 2 run(s), 62 metric point(s); 0 already in the store"
    )

    reported = json.loads(
        subprocess.run(
            [sys.executable, "-c", TRACKIO_READING],
            env=environment,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        ).stdout
    )
    with lakestore.connect(store) as opened:
        runs = dict(opened.sql("SELECT run_name, run_id FROM runs").fetchall())
        assert set(runs) == {"first", "second"}
        for name, run_id in runs.items():
            record = lakestore.get_run(run_id, store=store)
            config, logs = reported[run_id]
            assert record.experiment == "proj"
            assert record.params == {
                k: v if isinstance(v, str) else json.dumps(v)
                for k, v in config.items()
                if not k.startswith("_")
            }
            expected = sorted(
                (key, log["step"], repr(float(value)))
                for log in logs
                for key, value in log.items()
                if key not in ("step", "timestamp", "run")
                and (not isinstance(value, str) or value in ("nan", "inf", "-inf"))
            )
            got = opened.sql(
                "SELECT key, step, value FROM metrics WHERE run_id = ? "
                "AND NOT starts_with(key, 'system/')",
                [run_id],
            ).fetchall()
            assert sorted((k, s, repr(v)) for k, s, v in got) == expected, name
    again = import_trackio(str(tmp_path / "trackio" / "proj.db"), store=store)
    assert (again.imported, again.already_there) == (0, 2)


def test_an_import_reaches_an_object_store(
    tmp_path: Path, s3_env: str, request: pytest.FixtureRequest
) -> None:
    from tests.conftest import fresh_store_uri

    uri = _mlflow_store(tmp_path, "sqlite")
    store = fresh_store_uri("s3", request)
    assert _import(uri, store).startswith("imported 5 run(s), 159 metric point(s)")
    assert _import(uri, store).startswith("imported 0 run(s), 0 metric point(s); 5 already")
    with lakestore.connect(store) as opened:
        assert opened.sql("SELECT count(*) FROM metrics").fetchall() == [(159,)]
        statuses = opened.sql("SELECT status, count(*) FROM runs GROUP BY ALL ORDER BY 1")
        assert statuses.fetchall() == [("FAILED", 1), ("FINISHED", 3), ("KILLED", 1)]
