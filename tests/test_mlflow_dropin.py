"""The MLflow drop-in: ``import lakestore.mlflow as mlflow`` runs MLflow tracking scripts
unchanged and answers with MLflow's shapes."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import lakestore
import lakestore.mlflow as mlflow
from lakestore.errors import LakestoreError, RunAlreadyActiveError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mlflow_script.py"


def test_the_example_mlflow_script_runs_unchanged_but_for_its_import(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), store], capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("LAKESTORE_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == ["lr=0.1", "0.1", "0.999977"]
    assert done.stdout.splitlines()[-1] == "best run lr=0.1: 20 train/loss points"
    with lakestore.connect(store) as opened:
        runs = opened.sql(
            "SELECT run_name, status, parent_run_id IS NOT NULL FROM runs ORDER BY run_name"
        ).fetchall()
        assert runs == [
            ("from-the-client", "FINISHED", False),
            ("lr=0.001", "FINISHED", True),
            ("lr=0.01", "FINISHED", True),
            ("lr=0.1", "FINISHED", True),
            ("sweep", "FINISHED", False),
        ]
        assert opened.sql("SELECT count(*) FROM metrics WHERE key = 'train/loss'").fetchall() == [
            (60,)
        ]
        note = opened.sql("SELECT value FROM tags WHERE key = 'mlflow.note.content'")
        assert note.fetchall() == [("a small sweep",)]


def test_runs_and_search_come_back_in_mlflows_shapes(tmp_path: Path) -> None:
    mlflow.set_tracking_uri(f"file://{tmp_path / 'store'}")
    assert mlflow.get_tracking_uri() == str(tmp_path / "store")
    assert mlflow.get_experiment_by_name("e") is None
    experiment = mlflow.set_experiment("e")
    assert (experiment.experiment_id, experiment.name) == ("e", "e")
    with mlflow.start_run(run_name="parent") as parent:
        assert mlflow.active_run().info.run_id == parent.info.run_id
        with pytest.raises(RunAlreadyActiveError):
            mlflow.start_run()
        with mlflow.start_run(nested=True, tags={"team": "vision"}) as child:
            mlflow.log_param("lr", 0.1)
            mlflow.log_metric("acc", 0.9, step=3, timestamp=1_700_000_000_123)
            mlflow.log_metric("loss", 0.5)
    assert mlflow.active_run() is None
    assert mlflow.last_active_run().info.run_id == parent.info.run_id

    run = mlflow.get_run(child.info.run_id)
    assert run.info.run_id == run.info.run_uuid == child.info.run_id
    assert (run.info.experiment_id, run.info.status, run.info.lifecycle_stage) == (
        "e", "FINISHED", "active"
    )  # fmt: skip
    assert run.info.user_id == getpass.getuser()
    assert run.info.start_time <= run.info.end_time
    assert run.data.params == {"lr": "0.1"}
    assert run.data.metrics == {"acc": 0.9, "loss": 0.5}
    assert run.data.tags == {
        "team": "vision",
        "mlflow.runName": child.info.run_name,
        "mlflow.user": getpass.getuser(),
        "mlflow.parentRunId": parent.info.run_id,
    }
    [point] = mlflow.MlflowClient().get_metric_history(child.info.run_id, "acc")
    assert point == mlflow.Metric("acc", 0.9, 1_700_000_000_123, 3)

    frame = mlflow.search_runs(order_by=["attributes.start_time"])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:6]) == [
        "run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"
    ]  # fmt: skip
    assert list(frame["run_id"]) == [parent.info.run_id, child.info.run_id]
    assert {"metrics.acc", "params.lr", "tags.team", "tags.mlflow.parentRunId"} <= set(frame)
    assert list(frame["tags.mlflow.runName"]) == ["parent", child.info.run_name]
    runs = mlflow.search_runs(
        experiment_ids=["e"], filter_string="metrics.acc > 0.5", output_format="list"
    )
    assert [r.info.run_id for r in runs] == [child.info.run_id]
    assert mlflow.search_runs(experiment_names=["nope"]).empty
    assert [e.name for e in mlflow.search_experiments()] == ["e"]


def test_the_client_logs_to_runs_by_id(tmp_path: Path) -> None:
    mlflow.set_tracking_uri(str(tmp_path / "store"))
    client = mlflow.MlflowClient()
    created = client.create_run("0", run_name="by-id", tags={"k": "v"})
    assert mlflow.active_run() is None  # a client's run is not the active run
    run_id = created.info.run_id
    client.log_param(run_id, "lr", 0.1)
    client.log_metric(run_id, "loss", 0.25, step=2)
    client.set_tag(run_id, "stage", "x")
    client.delete_tag(run_id, "stage")
    client.log_batch(
        run_id,
        metrics=[mlflow.Metric("loss", 0.125, None, 3)],
        params=[mlflow.Param("layers", 4)],
        tags=[mlflow.RunTag("t", "u")],
    )
    client.set_terminated(run_id, "KILLED")
    run = client.get_run(run_id)
    assert (run.info.experiment_id, run.info.status) == ("0", "KILLED")
    assert lakestore.get_run(run_id).experiment == "default"
    assert run.data.params == {"lr": "0.1", "layers": "4"}
    assert run.data.metrics == {"loss": 0.125}
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == {
        "k": "v", "t": "u"
    }  # fmt: skip
    # A run of an earlier process is resumed to log to it.
    with lakestore.start_run(store=str(tmp_path / "store")) as other:
        pass
    mlflow.log_metric("late", 1.0, run_id=other.run_id)
    mlflow.log_params({"p": 1}, run_id=other.run_id)
    client.set_terminated(other.run_id)
    assert mlflow.get_run(other.run_id).data.metrics == {"late": 1.0}


@pytest.mark.parametrize("name", ["log_artifact", "log_model", "autolog", "sklearn"])
def test_artifacts_and_models_are_refused_as_out_of_scope(name: str) -> None:
    with pytest.raises(mlflow.OutOfScopeError, match=f"mlflow.{name} is not part of lakestore"):
        getattr(mlflow, name)


def test_an_unknown_name_and_a_server_uri_are_refused_clearly() -> None:
    with pytest.raises(AttributeError, match="no 'log_everything'"):
        mlflow.log_everything  # noqa: B018
    with pytest.raises(LakestoreError, match="lakestore import mlflow"):
        mlflow.set_tracking_uri("sqlite:///mlflow.db")


def test_start_run_takes_mlflows_log_system_metrics(tmp_path: Path) -> None:
    mlflow.set_tracking_uri(str(tmp_path / "store"))
    with mlflow.start_run(log_system_metrics=True) as run:
        time.sleep(1.05)  # a run ends with a last sample once a second has passed
    assert "system/cpu_utilization_percentage" in mlflow.get_run(run.info.run_id).data.metrics
