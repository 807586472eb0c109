"""Reading runs back as MLflow's fluent API does: get_run, search_runs, histories and
experiments from the module, and names for runs started without one."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest

import lakestore
from lakestore.errors import NoActiveRunError, RunNotFoundError


def test_get_run_gives_a_run_as_the_store_holds_it(store_uri: str) -> None:
    lakestore.set_store(store_uri)
    parent = lakestore.start_run(experiment="e", run_name="parent")
    with lakestore.start_run(nested=True, tags={"team": "vision"}) as child:
        child.log_params({"lr": 0.1, "model.name": "resnet"})
        child.log_metric("loss", 0.5, step=0)
        child.log_metric("loss", 0.25, step=1)
        lakestore.set_tag("stage", "x")
        lakestore.delete_tag("stage")
    parent.end()
    record = lakestore.get_run(child.run_id)
    assert record.run_id == child.run_id
    assert record.experiment == "e"
    assert record.run_name == child.run_name
    assert record.status == "FINISHED"
    assert record.parent_run_id == parent.run_id
    assert record.user == getpass.getuser()
    assert record.start_time is not None
    assert record.end_time is not None
    assert record.start_time <= record.end_time
    assert record.params == {"lr": "0.1", "model.name": "resnet"}
    assert record.metrics == {"loss": 0.25}
    assert record.tags == {"team": "vision"}
    assert lakestore.connect(store_uri).get_run(child.run_id) == record
    with pytest.raises(RunNotFoundError, match="no run 'f00d'"):
        lakestore.get_run("f00d")


def test_module_level_reads_see_what_was_logged_since_the_last_call(tmp_path: Path) -> None:
    lakestore.set_store(tmp_path / "store")
    with lakestore.start_run(experiment="a", run_name="first") as first:
        lakestore.log_metric("acc", 0.5)
    assert lakestore.search_runs("metrics.acc > 0").select("run_name").fetchall() == [("first",)]
    with lakestore.start_run(experiment="b", run_name="second") as second:
        lakestore.log_metric("acc", 0.9, step=3)
    found = lakestore.search_runs("metrics.acc > 0", order_by=["metrics.acc DESC"])
    assert found.select("run_name").fetchall() == [("second",), ("first",)]
    history = lakestore.get_metric_history(second.run_id, "acc")
    assert history.select("step", "value").fetchall() == [(3, 0.9)]
    assert [e.name for e in lakestore.search_experiments()] == ["a", "b"]
    experiment = lakestore.get_experiment_by_name("b")
    assert experiment is not None
    assert (experiment.name, experiment.runs) == ("b", 1)
    assert lakestore.get_experiment_by_name("nope") is None
    assert lakestore.get_run(first.run_id).metrics == {"acc": 0.5}


def test_a_run_started_without_a_name_gets_one_and_keeps_it(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with lakestore.start_run(store=store) as run:
        pass
    assert run.run_name is not None
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", run.run_name)
    with lakestore.start_run(run.run_id, store=store) as resumed:
        pass
    assert resumed.run_name == run.run_name
    assert lakestore.get_run(run.run_id, store=store).run_name == run.run_name


def test_last_active_run_is_the_active_run_else_the_last_one_ended(tmp_path: Path) -> None:
    assert lakestore.last_active_run() is None
    store = str(tmp_path / "store")
    with lakestore.start_run(store=store) as outer:
        assert lakestore.last_active_run() is outer
        with lakestore.start_run(store=store, nested=True) as inner:
            assert lakestore.last_active_run() is inner
        assert lakestore.last_active_run() is outer
    assert lakestore.last_active_run() is outer
    with pytest.raises(NoActiveRunError):
        lakestore.delete_tag("x")
