"""Runs whose processes died without ending them: a writer whose latest event is RUNNING
but older than ``lost_after`` is lost, and a run whose running writers are all lost is
CRASHED, ending at their last event. The events are written here as the format describes
them, with times in the past, and by a real process killed with SIGKILL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import lakestore
from lakestore import layout, spec
from lakestore.errors import InvalidValueError
from lakestore.storage import open_storage
from lakestore_cli.main import app

CHILD = str(Path(__file__).with_name("child_writer.py"))

Ago = Callable[[float], dt.datetime]


@pytest.fixture
def ago() -> Ago:
    """``ago(seconds)``: that long before this test started. Each test takes its own clock,
    so an event "60 seconds ago" stays 60 seconds old however long earlier tests ran."""
    now = dt.datetime.now(dt.UTC)
    return lambda seconds: now - dt.timedelta(seconds=seconds)


def _write_events(
    uri: str, run_id: str, writer: str, sequence: int, events: list, ago: Ago
) -> None:
    """A runs-table file of ``writer`` holding ``events``: (status, seconds ago) pairs."""
    storage = open_storage(uri)
    spec.ensure_format_marker(storage)
    rows = [
        {
            "event_time": ago(seconds),
            "status": status,
            "run_name": "r",
            "parent_run_id": None,
            "user": "u",
            "host": f"host-{writer[:4]}",
            "start_time": ago(seconds) if status == "RUNNING" else None,
            "end_time": None if status == "RUNNING" else ago(seconds),
            "writer_id": writer,
            "experiment": "e",
            "run": run_id,
            "seq": sequence,
        }
        for status, seconds in events
    ]
    table = pa.Table.from_pylist(rows, schema=spec.file_schema("runs"))
    path = layout.inbox_path("e", "runs", run_id, writer, sequence)
    storage.put_file(path, lambda destination: pq.write_table(table, destination))


def _state(uri: str, run_id: str, **options: float) -> tuple:
    with lakestore.connect(uri, **options) as store:
        [row] = store.sql(
            "SELECT status, start_time, end_time, duration_s FROM runs WHERE run_id = ?", [run_id]
        ).fetchall()
    return row


R, F, K = "RUNNING", "FINISHED", "KILLED"


@pytest.mark.parametrize(
    ("writers", "status", "ended"),
    [
        ([[(R, 600)]], "CRASHED", 600),
        ([[(R, 900), (R, 60)]], "RUNNING", None),
        ([[(R, 900), (F, 800)]], "FINISHED", 800),
        ([[(R, 900), (F, 700)], [(R, 900), (R, 600)]], "CRASHED", 600),  # a rank lost
        ([[(R, 900), (R, 800)], [(R, 900), (F, 100)]], "CRASHED", 100),  # others finished later
        ([[(R, 900)], [(R, 900), (R, 30)]], "RUNNING", None),  # one rank still heard from
        ([[(R, 900), (K, 850)], [(R, 500), (R, 400)]], "CRASHED", 400),  # resumed, then lost
    ],
)
def test_a_run_whose_running_writers_are_all_lost_is_crashed(
    tmp_path: Path, writers: list, status: str, ended: float | None, ago: Ago
) -> None:
    uri, run_id = str(tmp_path), "run1"
    for index, events in enumerate(writers):
        _write_events(uri, run_id, f"{index:032x}", 0, events, ago)
    started = max(seconds for events in writers for kind, seconds in events if kind == R)
    assert _state(uri, run_id) == (
        status,
        ago(started),
        None if ended is None else ago(ended),
        None if ended is None else float(started - ended),
    )


def test_a_crashed_run_runs_again_when_its_writer_is_heard_from(tmp_path: Path, ago: Ago) -> None:
    uri, writer = str(tmp_path), "a" * 32
    _write_events(uri, "run1", writer, 0, [(R, 900)], ago)
    assert _state(uri, "run1")[0] == "CRASHED"
    _write_events(uri, "run1", writer, 1, [(R, 10)], ago)  # back after a network partition
    assert _state(uri, "run1")[0] == "RUNNING"
    _write_events(uri, "run1", writer, 2, [(F, 5)], ago)
    assert _state(uri, "run1")[:3] == ("FINISHED", ago(900), ago(5))


def test_lost_after_is_an_option_of_the_store_and_the_commands(tmp_path: Path, ago: Ago) -> None:
    uri = str(tmp_path)
    _write_events(uri, "run1", "a" * 32, 0, [(R, 900), (R, 90)], ago)
    assert _state(uri, "run1")[0] == "RUNNING"
    assert _state(uri, "run1", lost_after=60)[0] == "CRASHED"
    with lakestore.connect(uri, lost_after=60) as store:
        found = store.search_runs("attributes.status = 'CRASHED'")
        assert found.select("run_id").fetchall() == [("run1",)]
    for args, shown in [([], "RUNNING"), (["--lost-after", "60"], "CRASHED")]:
        for command in (["runs"], ["query", "SELECT status FROM runs"]):
            result = CliRunner().invoke(app, [*command, *args, "-s", uri, "-f", "csv"])
            assert result.exit_code == 0, result.output
            assert shown in result.stdout
    lakestore.compact(uri, grace=0)
    assert _state(uri, "run1", lost_after=60)[0] == "CRASHED"


@pytest.mark.parametrize("lost_after", [0, -5.0, float("nan"), float("inf"), True, "60"])
def test_lost_after_must_be_seconds(tmp_path: Path, lost_after: object) -> None:
    with lakestore.start_run(store=str(tmp_path)):
        pass
    with pytest.raises(InvalidValueError, match="lost_after must be a number of seconds > 0"):
        lakestore.connect(str(tmp_path), lost_after=lost_after)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_writer_killed_with_sigkill_leaves_a_crashed_run(tmp_path: Path) -> None:
    uri = str(tmp_path)
    child = subprocess.Popen(
        [sys.executable, CHILD, "forever", uri, "0.05"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    child.stdout.readline()  # a thousand points flushed
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    status, start, end, duration = _state(uri, run_id)
    assert (status, end, duration) == ("RUNNING", None, None)  # silent for less than 300 s
    time.sleep(1.0)
    status, start, end, duration = _state(uri, run_id, lost_after=0.5)
    with lakestore.connect(uri) as store:
        [(last_event,)] = store.sql("SELECT max(event_time) FROM runs_log").fetchall()
        assert store.sql("SELECT count(*) FROM metrics").fetchall()[0][0] >= 1000
    assert (status, end) == ("CRASHED", last_event)
    assert duration == (last_event - start).total_seconds()
