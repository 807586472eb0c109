"""Compaction: one part per experiment and table, exact rows for every reader, even
concurrently, and metric summaries that agree with the rows."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lakestore
from lakestore import compaction
from lakestore.storage import open_storage
from lakestore_cli.main import app
from tests.conftest import fresh_store_uri
from tests.readers import READERS

CHILD = str(Path(__file__).with_name("child_writer.py"))


def _log_in_many_files(uri: str, flushes: int = 5) -> str:
    with lakestore.start_run(store=uri, experiment="e", tags={"t": "0"}) as run:
        for flush in range(flushes):
            for step in range(flush * 100, flush * 100 + 100):
                run.log_metric("loss", float(step), step=step)
            run.log_param(f"p{flush}", flush)
            run.set_tag("t", str(flush))
            run.flush()
    return run.run_id


def _files(uri: str, table: str) -> list[str]:
    return open_storage(uri).glob(f"{table}/*/*/*.parquet")


def _parts(uri: str, table: str) -> list[str]:
    return open_storage(uri).glob(f"compacted/{table}/*/*.parquet")


def test_compaction_leaves_one_part_per_experiment_and_the_same_rows(store_uri: str) -> None:
    run_id = _log_in_many_files(store_uri)
    before = {table: READERS["duckdb"](store_uri, table) for table in ("metrics", "params", "tags")}
    assert len(_files(store_uri, "metrics")) == 5

    assert lakestore.compact(store_uri, grace=0) == 4  # runs, params, metrics, tags
    for table in ("runs", "params", "metrics", "tags"):
        assert _files(store_uri, table) == []
        assert len(_parts(store_uri, table)) == 1
    for table, rows in before.items():
        for read in READERS.values():  # plain globs are exact once replaced files are gone
            assert read(store_uri, table) == rows
    with lakestore.connect(store_uri) as store:
        assert store.sql("SELECT count(*), count(DISTINCT step) FROM metrics").fetchall() == [
            (500, 500)
        ]
        assert store.sql("SELECT value FROM tags").fetchall() == [("4",)]
        assert store.sql("SELECT run_id, status FROM runs").fetchall() == [(run_id, "FINISHED")]
    assert lakestore.compact(store_uri, grace=0) == 0  # nothing left to merge


def test_compacted_run_folders_vanish_from_a_local_store(tmp_path: Path) -> None:
    for _ in range(3):
        _log_in_many_files(str(tmp_path), flushes=2)
    lakestore.compact(str(tmp_path), grace=0)
    assert list((tmp_path / "metrics" / "experiment=e").iterdir()) == []


def test_summaries_give_what_the_rows_give_before_and_after_more_logging(tmp_path: Path) -> None:
    uri = str(tmp_path)
    values = [1.0, math.nan, -math.inf, math.inf, 0.5]
    run_ids = []
    for experiment in ("a", "b"):
        for shift in range(3):
            with lakestore.start_run(store=uri, experiment=experiment) as run:
                run.log_metric_series("x", values[shift:], steps=list(range(5 - shift)))
                run.log_metric("y", float(shift), step=7)
                run.log_metric("y", -1.0, step=7)  # a tie in step: broken by timestamp
            run_ids.append(run.run_id)

    def summaries() -> list[tuple[object, ...]]:
        with lakestore.connect(uri) as store:
            stored = store.sql("SELECT * FROM metric_summary ORDER BY ALL").fetchall()
            computed = store.sql(
                """SELECT experiment, run_id, key,
                          arg_max(value, (step, timestamp, value)), max(step),
                          min(value), max(value), count(*)
                   FROM metrics GROUP BY ALL ORDER BY ALL"""
            ).fetchall()
        assert repr(stored) == repr(computed)  # repr: NaN equals NaN
        return stored

    logged = summaries()
    lakestore.compact(uri, grace=0)
    assert _files(uri, "metrics") == []
    assert repr(summaries()) == repr(logged)
    with lakestore.start_run(run_ids[0], store=uri) as run:  # rows in a part and in a file
        run.log_metric("x", -5.0, step=100)
        run.log_metric("z", 2.0)
    resumed = summaries()
    assert len(resumed) == len(logged) + 1
    lakestore.compact(uri, grace=0)
    assert len(_parts(uri, "metrics")) == 2  # the small parts of each experiment merged
    assert repr(summaries()) == repr(resumed)


def test_during_the_grace_period_glob_readers_see_duplicates_and_lakestore_does_not(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path)
    _log_in_many_files(uri)
    storage = open_storage(uri)
    assert compaction.compact_experiment(storage, "metrics", "experiment=e")
    assert len(READERS["duckdb"](uri, "metrics")) == 1000  # as docs/FORMAT.md says
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(500,)]
    assert compaction.delete_replaced(storage, "metrics", "experiment=e", grace=60) == 0
    # As after a compaction that stopped before deleting: nothing more to merge, and the
    # next compaction deletes the leftovers.
    assert not compaction.compact_experiment(storage, "metrics", "experiment=e")
    assert compaction.compact(storage, grace=0) == 3  # the other tables
    assert len(READERS["duckdb"](uri, "metrics")) == 500


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_of_compactions_racing_for_a_generation_one_publishes(
    backend: str, request: pytest.FixtureRequest
) -> None:
    uri = fresh_store_uri(backend, request)
    _log_in_many_files(uri)
    storage = open_storage(uri)
    start = threading.Barrier(4)
    published: list[bool] = []

    def compact_at_once() -> None:
        start.wait()
        published.append(compaction.compact_experiment(storage, "metrics", "experiment=e"))

    threads = [threading.Thread(target=compact_at_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(published) == [False, False, False, True]
    assert len(_parts(uri, "metrics")) == 1
    assert len(storage.glob("compacted/metric_summaries/*/*.parquet")) == 1  # losers' gone
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*), count(DISTINCT step) FROM metrics").fetchall() == [
            (500, 500)
        ]
        assert store.sql("SELECT sum(count) FROM metric_summary").fetchall() == [(500,)]


def test_a_later_compaction_merges_the_part_with_new_files(tmp_path: Path) -> None:
    uri = str(tmp_path)
    run_id = _log_in_many_files(uri)
    lakestore.compact(uri, grace=0)
    with lakestore.start_run(run_id, store=uri) as run:
        run.log_metric("loss", -1.0, step=1000)
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(501,)]
    lakestore.compact(uri, grace=0)
    assert len(_parts(uri, "metrics")) == 1
    assert _files(uri, "metrics") == []
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(501,)]
        assert store.sql("SELECT status FROM runs").fetchall() == [("FINISHED",)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "flush_interval", "grace"),
    # A query over the test S3 server's hundreds of small files takes seconds, and a query
    # must finish within the grace of the compactions running meanwhile (docs/QUERYING.md).
    [("local", "0.02", 3), ("s3", "0.1", 15)],
)
def test_queries_are_exact_while_a_writer_and_compactions_run(
    backend: str, flush_interval: str, grace: float, request: pytest.FixtureRequest
) -> None:
    uri = fresh_store_uri(backend, request)
    writer = subprocess.Popen(
        [sys.executable, CHILD, "forever", uri, flush_interval], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    writer.stdout.readline()
    stop = threading.Event()
    errors: list[BaseException] = []
    merged: list[int] = []

    def compact_repeatedly() -> None:
        while not stop.is_set():
            try:
                merged.append(lakestore.compact(uri, grace=grace))
            except BaseException as error:  # reported by the test below
                errors.append(error)
                return

    compactors = [threading.Thread(target=compact_repeatedly) for _ in range(2)]
    for thread in compactors:
        thread.start()
    checked = 0
    try:
        # Eight seconds of checks, and on a slow machine more: at least three, with at least
        # one compaction done, unless a compactor failed (reported below).
        deadline = time.monotonic() + 8
        while not errors and (checked < 3 or not any(merged) or time.monotonic() < deadline):
            with lakestore.connect(uri) as store:
                rows, distinct, top = store.sql(
                    "SELECT count(*), count(DISTINCT step), coalesce(max(step), -1) FROM metrics"
                ).fetchall()[0]
            assert rows == distinct == top + 1, "a query saw duplicates or a gap"
            checked += 1
    finally:
        stop.set()
        for thread in compactors:
            thread.join()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert not errors, errors
    assert sum(merged) > 0, "no compaction ran while the queries did"
    lakestore.compact(uri, grace=0)
    for read in READERS.values():
        steps = sorted(row[4] for row in read(uri, "metrics"))
        assert steps == list(range(len(steps)))


def test_compact_command(tmp_path: Path) -> None:
    uri = str(tmp_path)
    _log_in_many_files(uri)
    result = CliRunner().invoke(app, ["compact", "-s", uri, "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 part(s)" in result.stderr
    assert _files(uri, "metrics") == []
    missing = CliRunner().invoke(app, ["compact", "-s", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "no lakestore store" in missing.stderr
