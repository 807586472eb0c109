"""Merging: few files per experiment, every row exactly once for lakestore and for plain
readers at every moment, whatever merges, writers, crashes and late uploads do."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lakestore
from lakestore import layout, merge, session
from lakestore.spool import Spool
from lakestore.storage import open_storage
from lakestore_cli.main import app
from tests.conftest import fresh_store_uri
from tests.readers import READERS

CHILD = str(Path(__file__).with_name("child_writer.py"))
FOLDER = layout.experiment_folder("e")


def _log_in_many_files(uri: str, flushes: int = 5, experiment: str = "e") -> str:
    with lakestore.start_run(store=uri, experiment=experiment, tags={"t": "0"}) as run:
        for flush in range(flushes):
            for step in range(flush * 100, flush * 100 + 100):
                run.log_metric("loss", float(step), step=step)
            run.log_param(f"p{flush}", flush)
            run.set_tag("t", str(flush))
            run.flush()
    return run.run_id


def _files(uri: str, kind: str, table: str = "*") -> list[str]:
    return open_storage(uri).glob(f"experiments/*/{kind}/{table}/*.parquet")


def _snapshots(uri: str) -> list[str]:
    return open_storage(uri).glob("experiments/*/snapshots/*.parquet")


def _file_gone(error: Exception) -> bool:
    """Whether a reader failed on a file deleted since it listed it (each engine says so
    its own way: DuckDB passes on the fsspec error as text)."""
    text = str(error)
    return isinstance(error, FileNotFoundError) or any(
        words in text
        for words in (
            "No such file",
            "No files found",
            "FileNotFoundError",
            "not found",
            "NotFound",
            "NO_SUCH_KEY",
            "RESOURCE_NOT_FOUND",
        )
    )


def _read_exactly(read: Callable[[str, str], list[tuple[object, ...]]], uri: str) -> int:
    """The metric rows ``read`` finds, checked as by _exact_steps; read again while a
    merge deletes files under it (FORMAT.md: a reader slower than the grace reads again)."""
    for _ in range(5):
        try:
            return _exact_steps(read(uri, "metrics"))
        except Exception as error:
            if not _file_gone(error):
                raise
    return _exact_steps(read(uri, "metrics"))


def _exact_steps(rows: list[tuple[object, ...]]) -> int:
    """The number of metric rows, checking that steps 0..n-1 each appear once."""
    steps = sorted(row[4] for row in rows)
    assert steps == list(range(len(steps))), "a reader saw duplicates or a gap"
    return len(steps)


@pytest.fixture(autouse=True)
def _no_merges_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says when to merge; background merges would race with its expectations."""
    monkeypatch.setattr(merge, "MERGE_AFTER_FILES", 10**9)


def test_a_merge_keeps_every_row_once_and_leaves_one_part_per_table(store_uri: str) -> None:
    run_id = _log_in_many_files(store_uri)
    before = {table: READERS["duckdb"](store_uri, table) for table in ("metrics", "params", "tags")}
    assert len(_files(store_uri, "inbox", "metrics")) == 5

    assert lakestore.compact(store_uri, grace=0) == 18  # start: 2 files; 5 flushes of 3; end: 1
    assert _files(store_uri, "inbox") == []  # a snapshot 0 s old is past a grace of 0
    for table in ("runs", "params", "metrics", "tags", "metric_summaries"):
        assert len(_files(store_uri, "parts", table)) == 1
    assert len(_snapshots(store_uri)) == 1
    for table, rows in before.items():
        for read in READERS.values():
            assert read(store_uri, table) == rows
    with lakestore.connect(store_uri) as store:
        assert store.sql("SELECT count(*), count(DISTINCT step) FROM metrics").fetchall() == [
            (500, 500)
        ]
        assert store.sql("SELECT value FROM tags").fetchall() == [("4",)]
        assert store.sql("SELECT run_id, status FROM runs").fetchall() == [(run_id, "FINISHED")]
    assert lakestore.compact(store_uri, grace=0) == 0  # nothing left to merge


def test_merged_inbox_files_wait_out_the_grace_and_no_reader_counts_them(tmp_path: Path) -> None:
    uri = str(tmp_path)
    _log_in_many_files(uri)
    assert lakestore.compact(uri, grace=3600) == 18
    assert len(_files(uri, "inbox")) == 18  # kept for readers that listed them before
    for read in READERS.values():
        assert _exact_steps(read(uri, "metrics")) == 500
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(500,)]
    assert lakestore.compact(uri, grace=0) == 0
    assert _files(uri, "inbox") == []


def test_files_go_once_the_snapshot_that_replaced_them_is_past_the_grace(tmp_path: Path) -> None:
    # While writers keep merging the newest snapshot is always young: what older ones
    # replaced must still go, or listings grow with everything ever written.
    uri = str(tmp_path)
    _log_in_many_files(uri)
    assert lakestore.compact(uri, grace=3600) == 18
    (first,) = _snapshots(uri)
    an_hour_ago = time.time() - 3600
    os.utime(os.path.join(uri, first), (an_hour_ago, an_hour_ago))
    _log_in_many_files(uri)
    assert lakestore.compact(uri, grace=3600) == 18  # a new snapshot, not past the grace
    assert len(_files(uri, "inbox")) == 18  # the first 18 went: the second 18 wait
    assert len(_snapshots(uri)) == 2  # the old one decides what goes, and stays
    for read in READERS.values():
        assert len(read(uri, "metrics")) == 1000  # two runs of 500 steps, each row once


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_reader_slower_than_the_grace_sees_each_row_once_or_reads_again(
    reader: str, store_uri: str
) -> None:
    # A reader lists the inbox, then merges publish and, past their grace, delete what it
    # listed, before it lists the snapshots: it finds a file gone and reads again
    # (FORMAT.md). Listing the snapshots first would miss those rows with no error: they
    # would be in no file it reads.
    with lakestore.start_run(store=store_uri, experiment="e") as run:
        run.flush()
        lakestore.compact(store_uri, grace=0)  # a snapshot before any metric was logged
        steps = iter(range(10**6))

        def log_and_flush() -> None:
            for step in [next(steps) for _ in range(10)]:
                run.log_metric("loss", float(step), step=step)
            run.flush()

        for _ in range(3):
            log_and_flush()

        def merge_away_what_was_listed() -> None:
            log_and_flush()
            lakestore.compact(store_uri, grace=0)
            lakestore.compact(store_uri, grace=0)  # deletes the files the first merged

        try:
            rows = READERS[reader](store_uri, "metrics", merge_away_what_was_listed)
        except Exception as error:
            if not _file_gone(error):
                raise
            rows = READERS[reader](store_uri, "metrics")
    assert _exact_steps(rows) == 40


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
    assert _files(uri, "inbox") == []
    assert repr(summaries()) == repr(logged)
    with lakestore.start_run(run_ids[0], store=uri) as run:  # rows in a part and in a file
        run.log_metric("x", -5.0, step=100)
        run.log_metric("z", 2.0)
    resumed = summaries()
    assert len(resumed) == len(logged) + 1
    lakestore.compact(uri, grace=0)
    assert len(_files(uri, "parts", "metrics")) == 2  # each experiment's small part rewritten
    assert repr(summaries()) == repr(resumed)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_of_merges_racing_for_a_generation_one_publishes(
    backend: str, request: pytest.FixtureRequest
) -> None:
    uri = fresh_store_uri(backend, request)
    _log_in_many_files(uri)
    storage = open_storage(uri)
    start = threading.Barrier(4)
    outcomes: list[merge.Outcome] = []

    def merge_at_once() -> None:
        start.wait()
        # Without leases, as compact merges: the snapshot's exclusive creation decides.
        merged = merge.merge_experiment(storage, FOLDER, min_files=1, grace=3600, lease=False)
        outcomes.append(merged)

    threads = [threading.Thread(target=merge_at_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome.generation for outcome in outcomes) == [0, 0, 0, 1]
    assert _snapshots(uri) == [f"{FOLDER}/snapshots/0000000001.parquet"]
    for table in ("runs", "params", "metrics", "tags", "metric_summaries"):
        assert len(_files(uri, "parts", table)) == 1, "a losing merge left its parts"
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*), count(DISTINCT step) FROM metrics").fetchall() == [
            (500, 500)
        ]
        assert store.sql("SELECT sum(count) FROM metric_summary").fetchall() == [(500,)]
    for read in READERS.values():
        assert _exact_steps(read(uri, "metrics")) == 500


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_writer_leaves_a_merge_to_the_one_holding_its_lease(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = fresh_store_uri(backend, request)
    _log_in_many_files(uri)
    storage = open_storage(uri)
    assert storage.put_if_absent(layout.lease_path(FOLDER, 1), b"")  # a merge under way

    assert merge.merge_experiment(storage, FOLDER, min_files=1) == (0, 0, 0)
    assert _snapshots(uri) == []
    assert _files(uri, "parts") == []

    # A lease past LEASE_SECONDS is that of a merge that died: the next writer merges.
    monkeypatch.setattr(merge, "LEASE_SECONDS", 0.0)
    assert merge.merge_experiment(storage, FOLDER, min_files=1, grace=3600).generation == 1
    # A lease stays until the clean-up of the next merge, once its generation exists.
    assert storage.glob("experiments/*/leases/*") == [layout.lease_path(FOLDER, 1)]
    _log_in_many_files(uri)
    assert merge.merge_experiment(storage, FOLDER, min_files=1, grace=3600) == (18, 2, 1)
    assert storage.glob("experiments/*/leases/*") == [layout.lease_path(FOLDER, 2)]
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(1000,)]
    assert lakestore.check(uri) == []


@pytest.mark.parametrize(("runs", "merged"), [(2, False), (5, True)])
def test_a_process_that_exits_normally_merges_what_waits(
    tmp_path: Path, runs: int, merged: bool
) -> None:
    uri = str(tmp_path)
    script = (
        "import lakestore\n"
        f"for index in range({runs}):\n"
        f"    with lakestore.start_run(store={uri!r}, experiment='e') as run:\n"
        "        run.log_param('index', index)\n"
        "        run.log_metric('loss', float(index))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    found = layout.list_experiments(open_storage(uri))[FOLDER]
    # Four files a run: fewer than MERGE_AFTER_FILES, so only the exit merged them.
    assert len(found.inbox) == 4 * runs < merge.MERGE_AFTER_FILES
    if merged:
        assert 4 * runs >= merge.MERGE_AT_EXIT_FILES
        assert found.snapshot is not None
        assert found.unmerged() == []
    else:
        assert 4 * runs < merge.MERGE_AT_EXIT_FILES
        assert found.snapshot is None
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(runs,)]


def test_a_merge_still_running_at_exit_stops_and_the_process_exits_cleanly(
    tmp_path: Path,
) -> None:
    # No wait at all: the exit merge is stopped at its first step, wherever that is.
    uri = str(tmp_path)
    script = (
        "import lakestore, lakestore.merge as merge\n"
        "merge.EXIT_WAIT = 0.0\n"
        "for index in range(8):\n"
        f"    with lakestore.start_run(store={uri!r}, experiment='e') as run:\n"
        "        run.log_metric_series('loss', [float(step) for step in range(1000)])\n"
    )
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr  # not aborted inside DuckDB or Arrow
        assert "terminate called" not in done.stderr
    for read in READERS.values():
        assert len(read(uri, "metrics")) == 3 * 8 * 1000
    assert lakestore.compact(uri, grace=0) >= 0
    assert lakestore.check(uri) == []


def test_a_later_merge_rewrites_the_small_part_with_new_files(tmp_path: Path) -> None:
    uri = str(tmp_path)
    run_id = _log_in_many_files(uri)
    lakestore.compact(uri, grace=0)
    with lakestore.start_run(run_id, store=uri) as run:
        run.log_metric("loss", -1.0, step=1000)
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(501,)]
    lakestore.compact(uri, grace=0)
    assert len(_files(uri, "parts", "metrics")) == 1
    assert _files(uri, "inbox") == []
    assert len(_snapshots(uri)) == 1
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(501,)]
        assert store.sql("SELECT status FROM runs").fetchall() == [("FINISHED",)]


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of 100 rows count as large, and 3 of a size merge into one."""
    monkeypatch.setattr(merge, "SMALL_PART_ROWS", 100)
    monkeypatch.setattr(merge, "FAN_IN", 3)


def _log_100_rows_and_merge(uri: str, merge_now: Callable[[], object]) -> list[int]:
    """Log a run of 100 metric rows, merge with ``merge_now()``; the metrics parts' sizes."""
    with lakestore.start_run(store=uri, experiment="e") as run:
        run.log_metric_series("x", [1.0] * 100)
    merge_now()
    snapshot = layout.list_experiments(open_storage(uri))[FOLDER].snapshot
    return sorted(part.rows for part in snapshot.parts["metrics"])  # type: ignore[union-attr]


@pytest.mark.usefixtures("small_parts")
def test_large_parts_merge_a_fan_in_at_a_time(tmp_path: Path) -> None:
    uri = str(tmp_path)
    for _ in range(8):
        sizes = _log_100_rows_and_merge(uri, lambda: lakestore.compact(uri, grace=0))
    # Every merge adds a part of 100 rows; three of them make one of 300.
    assert sizes == [100, 100, 300, 300]
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(800,)]
        assert store.sql("SELECT sum(count) FROM metric_summary").fetchall() == [(800,)]


@pytest.mark.usefixtures("small_parts")
def test_writers_leave_the_largest_part_merges_to_compact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path)
    monkeypatch.setattr(merge, "WRITER_PART_ROWS", 300)

    def as_a_writer() -> None:
        merge.merge_experiment(open_storage(uri), FOLDER, min_files=1)

    for _ in range(9):
        sizes = _log_100_rows_and_merge(uri, as_a_writer)
    assert sizes == [300, 300, 300]  # writers stop at 300 rows
    assert _log_100_rows_and_merge(uri, lambda: lakestore.compact(uri, grace=0)) == [100, 900]


def test_writers_merge_on_their_own_as_files_pile_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path)
    monkeypatch.setattr(merge, "MERGE_AFTER_FILES", 20)
    for index in range(30):
        with lakestore.start_run(store=uri, experiment="e") as run:
            run.log_param("index", index)
            run.log_metric("loss", float(index))
        session.current().resource(merge.BackgroundMerges).wait()
    assert _snapshots(uri), "no merge ran"
    found = layout.list_experiments(open_storage(uri))[FOLDER]
    assert len(found.unmerged()) < 20 + merge.CHECK_EVERY_FILES
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*), sum(value) FROM metrics").fetchall() == [
            (30, float(sum(range(30))))
        ]
        assert store.sql("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchall() == [
            (30,)
        ]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_spooled_file_uploaded_again_after_merges_is_never_counted_twice(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer killed between uploading a spooled file and removing it from the spool: the
    # spool's copy is uploaded again later, after merges merged and deleted the first one.
    monkeypatch.setenv("LAKESTORE_SPOOL_DIR", str(tmp_path / "spool"))
    uri = fresh_store_uri(backend, request)
    storage = open_storage(uri)
    with lakestore.start_run(store=uri, experiment="e") as run:
        for step in range(100):
            run.log_metric("loss", float(step), step=step)
    (metrics_file,) = _files(uri, "inbox", "metrics")
    first_copy = storage.get(metrics_file) or b""
    Spool(storage.url).put(metrics_file, first_copy)
    lakestore.compact(uri, grace=0)
    with lakestore.start_run(store=uri, experiment="e") as other:
        other.log_metric("other", 1.0)
    lakestore.compact(uri, grace=0)
    assert _files(uri, "inbox") == []
    if backend == "s3":  # the next run uploaded the spool once already; this is a second copy
        Spool(storage.url).put(metrics_file, first_copy)
        assert lakestore.sync(uri) == 1
    else:  # a local store has no spool: a late copy of the file, by any means
        storage.put_if_absent(metrics_file, first_copy)
    assert _files(uri, "inbox", "metrics") == [metrics_file]  # back in the store...
    for read in READERS.values():  # ...and counted by no reader
        assert len([row for row in read(uri, "metrics") if row[2] == "loss"]) == 100
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics WHERE key = 'loss'").fetchall() == [(100,)]
    lakestore.compact(uri, grace=0)
    assert _files(uri, "inbox") == []  # and deleted again by the next merge
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics WHERE key = 'loss'").fetchall() == [(100,)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "flush_interval", "grace"), [("local", "0.02", 1.0), ("s3", "0.5", 15.0)]
)
def test_every_reader_is_exact_while_a_writer_and_merges_run(
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

    def merge_repeatedly() -> None:
        while not stop.is_set():
            try:
                merged.append(lakestore.compact(uri, grace=grace))
            except BaseException as error:  # reported by the test below
                errors.append(error)
                return

    mergers = [threading.Thread(target=merge_repeatedly) for _ in range(2)]
    for thread in mergers:
        thread.start()
    checked: dict[str, int] = {}
    try:
        # Checks for eight seconds, and on a slow machine until every reader has read
        # twice with a merge done, unless a merger failed (reported below).
        deadline = time.monotonic() + 8
        give_up = time.monotonic() + 150
        while not errors and (
            min(checked.values(), default=0) < 2 or not any(merged) or time.monotonic() < deadline
        ):
            assert time.monotonic() < give_up, f"readers checked {checked}, merges {merged}"
            with lakestore.connect(uri) as store:
                rows, distinct, top = store.sql(
                    "SELECT count(*), count(DISTINCT step), coalesce(max(step), -1) FROM metrics"
                ).fetchall()[0]
            assert rows == distinct == top + 1, "a query saw duplicates or a gap"
            for name, read in READERS.items():
                try:
                    _exact_steps(read(uri, "metrics"))
                except Exception as error:
                    if not _file_gone(error):
                        raise
                    continue  # a merge deleted a file meanwhile: FORMAT.md says read again
                checked[name] = checked.get(name, 0) + 1
    finally:
        stop.set()
        for thread in mergers:
            thread.join()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert not errors, errors
    assert sum(merged) > 0, "no merge ran while the readers read"
    lakestore.compact(uri, grace=0)
    for read in READERS.values():
        _exact_steps(read(uri, "metrics"))


@pytest.mark.slow
def test_mergers_killed_at_random_points_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path)
    writer = subprocess.Popen(
        [sys.executable, CHILD, "forever", uri, "0.01"], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    writer.stdout.readline()
    random.seed(7)
    try:
        for _ in range(8):
            merger = subprocess.Popen(
                [sys.executable, CHILD, "merge", uri, "0.2"], stdout=subprocess.DEVNULL
            )
            time.sleep(random.uniform(0.3, 1.5))
            merger.send_signal(signal.SIGKILL)
            merger.wait()
            for read in READERS.values():
                _read_exactly(read, uri)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    with lakestore.connect(uri) as store:
        rows, distinct, top = store.sql(
            "SELECT count(*), count(DISTINCT step), max(step) FROM metrics"
        ).fetchall()[0]
    assert rows == distinct == top + 1
    lakestore.compact(uri, grace=0)
    lakestore.compact(uri, grace=0)  # the second finds nothing but deletes the first's leftovers
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(rows,)]
    assert _files(uri, "inbox") == []
    assert len(_snapshots(uri)) == 1
    found = layout.list_experiments(open_storage(uri))
    live = {part for f in found.values() for p in f.snapshot.parts.values() for part, _ in p}  # type: ignore[union-attr]
    assert set(_files(uri, "parts")) == live, "a killed merger's parts were left behind"


def test_compact_command(tmp_path: Path) -> None:
    uri = str(tmp_path)
    _log_in_many_files(uri)
    result = CliRunner().invoke(app, ["compact", "-s", uri, "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert "merged 18 inbox file(s)" in result.stderr
    assert _files(uri, "inbox") == []
    missing = CliRunner().invoke(app, ["compact", "-s", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "no lakestore store" in missing.stderr


def test_a_history_lists_only_its_runs_files(
    store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def log(experiment: str, steps: range, run_id: str | None = None) -> str:
        with lakestore.start_run(run_id, experiment=experiment, store=store_uri) as run:
            for step in steps:
                run.log_metric("loss", float(step), step=step)
        return run.run_id

    merged = log("e", range(0, 50))
    other = log("e", range(0, 7))
    lakestore.compact(store_uri, grace=0)
    log("e", range(50, 60), merged)  # and some of its rows wait in the inbox
    log("f", range(0, 3))
    with lakestore.connect(store_uri) as store:
        listed: list[tuple[str, str]] = []
        list_names = store.storage.list_names

        def spy(prefix: str, start: str = "") -> dict[str, object]:
            listed.append((prefix, start))
            return list_names(prefix, start)  # type: ignore[return-value]

        monkeypatch.setattr(store.storage, "list_names", spy)
        history = store.metric_history(merged, "loss").fetchall()
        assert [row[4] for row in history] == list(range(60))
        assert ("experiments", "") not in listed, "the whole store was listed"
        assert (f"{FOLDER}/inbox/metrics", f"{merged}.") in listed
        # Its experiment known, the next history lists that experiment alone; a relation
        # handed out before still reads every run when fetched after.
        pending = store.sql("SELECT count(*) FROM metrics")
        listed.clear()
        assert len(store.metric_history(merged, "loss").fetchall()) == 60
        assert {prefix.split("/")[1] for prefix, _ in listed} == {"e"}
        assert pending.fetchall() == [(60 + 7 + 3,)]
        # A run logged since, in a new experiment, is found; so are a run with no rows left
        # in the inbox, and none for a run that does not exist (after a whole listing).
        late = log("late", range(4))
        assert [row[4] for row in store.metric_history(late).fetchall()] == list(range(4))
        assert len(store.metric_history(other).fetchall()) == 7
        listed.clear()
        assert store.metric_history("no-such-run").fetchall() == []
        assert ("experiments", "") in listed
