"""Deleting, restoring and renaming runs and experiments, and purging them (lakestore gc)."""

from __future__ import annotations

import glob
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

import lakestore
from lakestore.errors import (
    ExperimentNotFoundError,
    FilterError,
    InvalidNameError,
    RunDeletedError,
    RunNotFoundError,
)
from lakestore_cli.main import app
from tests.readers import READERS

CHILD = str(Path(__file__).with_name("child_writer.py"))


def _log(store: str, experiment: str, name: str, points: int = 3) -> str:
    with lakestore.start_run(store=store, experiment=experiment, run_name=name) as run:
        run.log_param("lr", 0.1)
        run.set_tag("team", "vision")
        for step in range(points):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    return run.run_id


def _runs(store: str, view: str = "runs") -> dict[str, str]:
    with lakestore.connect(store) as opened:
        return dict(opened.sql(f"SELECT run_id, run_name FROM {view}").fetchall())


def test_a_deleted_run_leaves_lists_and_searches_until_restored(store_uri: str) -> None:
    kept, deleted = _log(store_uri, "e", "kept"), _log(store_uri, "e", "deleted")
    lakestore.delete_run(deleted, store=store_uri)

    assert _runs(store_uri) == {kept: "kept"}
    with lakestore.connect(store_uri) as store:
        assert store.search_runs().to_arrow_table()["run_id"].to_pylist() == [kept]
        only_deleted = store.search_runs("params.lr = '0.1'", view_type="deleted_only")
        assert only_deleted.to_arrow_table()["run_id"].to_pylist() == [deleted]
        every = store.search_runs(view_type="all").to_arrow_table()
        assert dict(
            zip(every["run_id"].to_pylist(), every["lifecycle_stage"].to_pylist(), strict=True)
        ) == {
            kept: "active",
            deleted: "deleted",
        }
        assert store.get_run(deleted).lifecycle_stage == "deleted"
        assert store.sql("SELECT runs FROM experiments").fetchall() == [(1,)]
        # The raw tables keep every row until lakestore gc purges them.
        assert store.sql("SELECT count(DISTINCT run_id) FROM metrics").fetchall() == [(2,)]
        with pytest.raises(FilterError, match="'everything'"):
            store.search_runs(view_type="everything")

    lakestore.restore_run(deleted, store=store_uri)
    assert _runs(store_uri) == {kept: "kept", deleted: "deleted"}
    assert lakestore.get_run(deleted, store=store_uri).lifecycle_stage == "active"


def test_a_deleted_run_is_restored_before_it_is_resumed(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    run_id = _log(store, "e", "first")
    lakestore.delete_run(run_id, store=store)
    with pytest.raises(RunDeletedError, match="restore it first"):
        lakestore.start_run(run_id, store=store)
    lakestore.restore_run(run_id, store=store)
    with lakestore.start_run(run_id, store=store) as run:
        run.log_metric("loss", 0.1, step=3)
    assert lakestore.get_run(run_id, store=store).metrics == {"loss": 0.1}


def test_renaming_a_run_sets_its_name_everywhere(store_uri: str) -> None:
    run_id = _log(store_uri, "e", "old")
    lakestore.rename_run(run_id, "new", store=store_uri)
    assert _runs(store_uri) == {run_id: "new"}
    with lakestore.connect(store_uri) as store:
        for found in ("attributes.run_name = 'new'", "tags.mlflow.runName = 'new'"):
            assert store.search_runs(found).to_arrow_table()["run_id"].to_pylist() == [run_id]
    # Resuming under the old name keeps the new one; naming it on resuming renames it.
    lakestore.start_run(run_id, store=store_uri).end()
    assert _runs(store_uri) == {run_id: "new"}
    lakestore.start_run(run_id, store=store_uri, run_name="newer").end()
    assert _runs(store_uri) == {run_id: "newer"}
    with pytest.raises(InvalidNameError, match="must not be empty"):
        lakestore.rename_run(run_id, "", store=store_uri)
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        lakestore.rename_run("nope", "x", store=store_uri)


def test_a_deleted_experiment_takes_its_runs_along_until_restored(store_uri: str) -> None:
    kept = _log(store_uri, "kept", "a")
    gone = _log(store_uri, "gone", "b")
    lakestore.delete_experiment("gone", store=store_uri)
    assert _runs(store_uri) == {kept: "a"}
    with lakestore.connect(store_uri) as store:
        assert store.sql("SELECT experiment FROM experiments").fetchall() == [("kept",)]
        assert store.sql(
            "SELECT experiment, lifecycle_stage FROM all_experiments ORDER BY experiment"
        ).fetchall() == [("gone", "deleted"), ("kept", "active")]
        assert store.get_run(gone).lifecycle_stage == "deleted"
    assert [found.name for found in lakestore.search_experiments(store=store_uri)] == ["kept"]
    with pytest.raises(RunDeletedError, match="experiment 'gone' is deleted"):
        lakestore.start_run(gone, store=store_uri)
    lakestore.restore_experiment("gone", store=store_uri)
    assert _runs(store_uri) == {kept: "a", gone: "b"}
    with pytest.raises(ExperimentNotFoundError, match="no experiment 'nope'"):
        lakestore.delete_experiment("nope", store=store_uri)


def test_a_renamed_experiment_keeps_its_id(store_uri: str) -> None:
    first = _log(store_uri, "draft", "a")
    _log(store_uri, "other", "b")
    lakestore.rename_experiment("draft", "final", store=store_uri)
    found = lakestore.get_experiment_by_name("final", store=store_uri)
    assert found is not None
    assert (found.name, found.experiment_id, found.runs) == ("final", "draft", 1)
    assert lakestore.get_experiment_by_name("draft", store=store_uri) is None
    # Runs are logged to it by its id; lifecycle calls take its id or its name.
    second = _log(store_uri, "draft", "c")
    with lakestore.connect(store_uri) as store:
        assert sorted(
            store.sql("SELECT run_id FROM runs WHERE experiment = 'draft'").fetchall()
        ) == sorted([(first,), (second,)])
    lakestore.delete_experiment("final", store=store_uri)
    assert set(_runs(store_uri).values()) == {"b"}
    with pytest.raises(InvalidNameError, match="has that name already"):
        lakestore.rename_experiment("final", "other", store=store_uri)


def test_experiment_tags_are_set_on_the_experiment_itself(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    lakestore.set_experiment_tags({"team": "vision", "goal": "sota"}, experiment="e", store=store)
    lakestore.set_experiment_tag("goal", "baseline", experiment="e", store=store)
    found = lakestore.get_experiment_by_name("e", store=store)
    assert found is not None
    assert (found.runs, found.tags) == (0, {"goal": "baseline", "team": "vision"})
    run_id = _log(store, "e", "a")
    with lakestore.connect(store) as opened:
        assert opened.sql("SELECT key, value FROM experiment_tags ORDER BY key").fetchall() == [
            ("goal", "baseline"),
            ("team", "vision"),
        ]
        # An experiment's own tags are not a run's.
        assert opened.sql("SELECT DISTINCT run_id FROM tags").fetchall() == [(run_id,)]
    with pytest.raises(InvalidNameError, match="reserved"):
        lakestore.set_experiment_tag("lakestore.deleted", "x", experiment="e", store=store)
    with pytest.raises(InvalidNameError, match="reserved"):
        lakestore.start_run(store=store, tags={"lakestore.name": "x"})
    with pytest.raises(InvalidNameError, match="reserved"):
        lakestore.start_run("_experiment", store=store)


def _parquet_rows(root: str, run_id: str) -> int:
    """Rows of ``run_id`` in every Parquet file under ``root``, read directly."""
    paths = [p for p in glob.glob(f"{root}/experiments/**/*.parquet", recursive=True)]
    paths = [p for p in paths if "/snapshots/" not in p]
    found = ds.dataset(paths).to_table(columns=["run", "key"]) if paths else None
    if found is None:
        return 0
    rows = found.filter((ds.field("run") == run_id) & (ds.field("key") != "lakestore.deleted"))
    return rows.num_rows


@pytest.mark.parametrize("merged", [False, True], ids=["inbox", "parts"])
def test_gc_purges_deleted_runs_from_inbox_files_and_parts(tmp_path: Path, merged: bool) -> None:
    store = str(tmp_path / "store")
    kept = _log(store, "e", "kept", points=50)
    purged = _log(store, "e", "purged", points=50)
    if merged:
        lakestore.compact(store, grace=0)
    lakestore.delete_run(purged, store=store)
    assert lakestore.gc(store, grace=3600) == (0, 0, 0)  # not deleted for an hour yet
    assert _parquet_rows(store, purged) > 0

    assert lakestore.gc(store, grace=0).runs == 1
    assert _parquet_rows(store, purged) == 0
    assert _parquet_rows(store, kept) > 0
    for read in READERS.values():
        metrics = read(store, "metrics")
        assert sorted((run, step) for _, run, _, _, step, _, _ in metrics) == [
            (kept, step) for step in range(50)
        ]
    assert _runs(store, "all_runs") == {kept: "kept"}
    assert lakestore.gc(store, grace=0).runs == 0
    with pytest.raises(RunNotFoundError):  # purged: nothing comes back
        lakestore.restore_run(purged, store=store)


def test_gc_removes_a_deleted_experiments_folder(store_uri: str) -> None:
    _log(store_uri, "gone", "a")
    kept = _log(store_uri, "kept", "b")
    lakestore.delete_experiment("gone", store=store_uri)
    purged = lakestore.gc(store_uri, grace=0)
    assert (purged.experiments, purged.runs) == (1, 0)
    assert purged.files > 0
    assert _runs(store_uri, "all_runs") == {kept: "b"}
    if not store_uri.startswith("s3://"):
        assert not Path(store_uri, "experiments", "gone").exists()


@pytest.mark.slow
def test_gc_while_writers_write_loses_no_live_row(store_uri: str) -> None:
    """Writers log runs to an experiment while gc purges runs deleted in it, again and
    again: every row of the live runs reads exactly once, by every reader."""
    rows = 500 if store_uri.startswith("s3://") else 5_000
    doomed = [_log(store_uri, "e", f"doomed{index}", points=100) for index in range(4)]
    lakestore.compact(store_uri, grace=0)
    errors: list[BaseException] = []

    def purge_repeatedly() -> None:
        for run_id in doomed:
            try:
                lakestore.delete_run(run_id, store=store_uri)
                lakestore.gc(store_uri, grace=0)
            except BaseException as error:  # reported by the test below
                errors.append(error)
                return

    writers = [
        subprocess.Popen(
            [
                sys.executable,
                CHILD,
                "write",
                store_uri,
                "e",
                "new",
                f"key{index}",
                str(rows),
                "0.01",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    purger = threading.Thread(target=purge_repeatedly)
    purger.start()
    try:
        outputs = [writer.communicate(timeout=300) for writer in writers]
    finally:
        purger.join()
    assert not errors, errors
    assert all(writer.returncode == 0 for writer in writers), outputs
    lakestore.gc(store_uri, grace=0)
    live = {out.strip().splitlines()[0] for out, _ in outputs}
    for read in READERS.values():
        metrics = read(store_uri, "metrics")
        assert {run for _, run, *_ in metrics} == live
        assert len(metrics) == rows * 4
        assert len({(run, key, step) for _, run, key, _, step, _, _ in metrics}) == rows * 4


def test_the_command_line_deletes_restores_renames_and_purges(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first, second = _log(store, "e", "first"), _log(store, "f", "second")
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, [*args, "--store", store])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert first in invoke("runs", "--format", "csv")
    invoke("runs", "delete", first[:8])
    assert first not in invoke("runs", "--format", "csv")
    assert first in invoke("runs", "--deleted", "--format", "csv")
    assert first in invoke("runs", "list", "--all", "--format", "csv")
    invoke("runs", "restore", first[:8])
    invoke("runs", "rename", first[:8], "renamed")
    assert "renamed" in invoke("runs", "e", "--format", "csv", "--columns", "run_name")
    invoke("experiments", "rename", "f", "final")
    assert "final" in invoke("experiments", "--format", "csv")
    invoke("experiments", "delete", "final")
    assert "final" not in invoke("experiments", "--format", "csv")
    assert "final" in invoke("experiments", "--deleted", "--format", "csv")
    assert second not in invoke("runs", "--format", "csv")
    invoke("experiments", "restore", "final")
    assert second in invoke("runs", "--format", "csv")
    invoke("experiments", "delete", "f")
    result = runner.invoke(app, ["gc", "--grace", "0", "--store", store])
    assert result.exit_code == 0, result.output
    assert "purged 1 experiment(s) and 0 run(s)" in result.stderr
    missing = runner.invoke(app, ["experiments", "delete", "nope", "--store", store])
    assert missing.exit_code == 1
    assert "no experiment 'nope'" in missing.stderr
