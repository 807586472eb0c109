"""The writer of each row: several processes write one run (as the ranks of a distributed
job do), and every view and raw table, and every plain reader, tells which one logged each
row, whether it is read from an inbox file or from a part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import lakestore
from lakestore import layout, spec
from lakestore.storage import open_storage
from tests.readers import READERS

CHILD = str(Path(__file__).with_name("child_writer.py"))
RANKS = 4
ROWS = 300


def _ranks_write_one_run(uri: str) -> tuple[str, str]:
    """A run started here (one writer), then RANKS processes resuming it at once; returns
    the run id and the writer id of the process that started it."""
    with lakestore.start_run(store=uri, experiment="ddp") as run:
        run.log_param("world_size", RANKS)
        run.log_metric("loss", -1.0, step=-1)
    writers = [
        subprocess.Popen(
            [sys.executable, CHILD, "write", uri, "ddp", run.run_id, "loss", str(ROWS), "0.01"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RANKS)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    return run.run_id, run._writer.writer_id


def _per_writer(store: lakestore.Store) -> list[tuple[str | None, int, str | None]]:
    """Rows of metrics per writer, with the host that writer's run events name."""
    return store.sql(
        """
        SELECT m.writer_id, count(*) AS points, any_value(w.host) AS host
        FROM metrics AS m
        LEFT JOIN (SELECT DISTINCT writer_id, host FROM runs_log) AS w USING (writer_id)
        GROUP BY m.writer_id ORDER BY points, m.writer_id
        """
    ).fetchall()


def test_each_row_names_its_writer_before_and_after_compaction(store_uri: str) -> None:
    run_id, first = _ranks_write_one_run(store_uri)
    with lakestore.connect(store_uri) as store:
        before = _per_writer(store)
        assert [points for _, points, _ in before] == [1] + [ROWS] * RANKS
        assert before[0][0] == first
        assert len({writer for writer, _, _ in before}) == RANKS + 1
        assert all(host is not None for _, _, host in before)  # every writer is in runs_log
        assert store.sql("SELECT writer_id FROM params").fetchall() == [(first,)]
        raw = store.sql("SELECT count(DISTINCT writer_id) FROM metrics_log").fetchall()
        assert raw == [(RANKS + 1,)]
        summary = store.sql("SELECT count FROM metric_summary WHERE run_id = ?", [run_id])
        assert summary.fetchall() == [(1 + RANKS * ROWS,)]

    storage = open_storage(store_uri)
    [found] = layout.list_experiments(storage).values()
    waiting = len(found.unmerged())  # the last rank to exit may have merged already
    assert lakestore.compact(store_uri, grace=0) == waiting
    with lakestore.connect(store_uri) as store:
        assert _per_writer(store) == before
        assert store.sql("SELECT writer_id FROM params").fetchall() == [(first,)]
        searched = store.search_runs("metrics.loss >= 0 and params.world_size = 4")
        assert searched.select("run_id").fetchall() == [(run_id,)]

    [found] = layout.list_experiments(storage).values()
    assert found.unmerged() == []
    assert found.snapshot is not None
    assert sorted(found.snapshot.parts) == ["metric_summaries", "metrics", "params", "runs"]
    for part in found.snapshot.live_parts("metrics"):
        with storage.open_read(part) as file:
            metadata = pq.ParquetFile(file).metadata
        for group in range(metadata.num_row_groups):
            column = metadata.row_group(group).column(metadata.schema.names.index("writer_id"))
            assert "RLE_DICTIONARY" in column.encodings


LOGGED = {"runs": "status", "params": "key", "metrics": "value", "tags": "value"}
"""For each table, a column whose values tell what each writer logged."""


def _log_as_a_new_writer(uri: str, run_id: str | None, number: int) -> tuple[str, str]:
    """Start (or resume) a run in a new writer and log a param, a metric and a tag that
    ``number`` tells apart; returns the run id and the writer id."""
    with lakestore.start_run(run_id, store=uri, experiment="e", tags={"t": f"v{number}"}) as run:
        run.log_param(f"p{number}", number)
        run.log_metric("m", float(number), step=number)
    return run.run_id, run._writer.writer_id


def _expected(table: str, run_id: str, writer: str, number: int) -> list[tuple[object, ...]]:
    logged: list[object] = {
        "runs": ["RUNNING", "FINISHED"],
        "params": [f"p{number}"],
        "metrics": [float(number)],
        "tags": [f"v{number}"],
    }[table]
    return [("e", run_id, value, writer) for value in logged]


def _rows_with_writers(uri: str, table: str) -> dict[str, list[tuple[object, ...]]]:
    """(experiment, run, logged value, writer id) of every row of ``table``, as lakestore's
    raw table and each plain reader of docs/FORMAT.md read them."""
    column = LOGGED[table]
    with lakestore.connect(uri) as store:
        rows = {
            "lakestore": store.sql(
                f"SELECT experiment, run, {column}, writer_id FROM {table}_log ORDER BY ALL"
            ).fetchall()
        }
        if table != "runs":  # the view of the current state keeps each row's writer
            view = store.sql(f"SELECT experiment, run_id, {column}, writer_id FROM {table}")
            assert set(view.fetchall()) <= set(rows["lakestore"])
    names = spec.file_schema(table).names
    at = [names.index(name) for name in ("experiment", "run", column, "writer_id")]
    for name, read in READERS.items():
        rows[name] = sorted(tuple(row[index] for index in at) for row in read(uri, table))
    return rows


@pytest.mark.parametrize("table", list(LOGGED))
def test_every_row_names_the_writer_that_logged_it_in_inbox_and_parts(
    tmp_path: Path, table: str
) -> None:
    uri = str(tmp_path)
    run_id, first = _log_as_a_new_writer(uri, None, 0)
    _, second = _log_as_a_new_writer(uri, run_id, 1)
    other_run, third = _log_as_a_new_writer(uri, None, 2)
    expected = sorted(
        _expected(table, run_id, first, 0)
        + _expected(table, run_id, second, 1)
        + _expected(table, other_run, third, 2)
    )
    assert len({first, second, third}) == 3

    def check(*, inbox: bool, parts: bool) -> None:
        [found] = layout.list_experiments(open_storage(uri)).values()
        assert bool(found.unmerged(table)) == inbox
        assert bool(found.snapshot and found.snapshot.live_parts(table)) == parts
        for name, rows in _rows_with_writers(uri, table).items():
            assert rows == expected, name

    check(inbox=True, parts=False)
    lakestore.compact(uri, grace=0)
    check(inbox=False, parts=True)
    _, fourth = _log_as_a_new_writer(uri, run_id, 3)
    expected = sorted(expected + _expected(table, run_id, fourth, 3))
    check(inbox=True, parts=True)
    lakestore.compact(uri, grace=0)
    check(inbox=False, parts=True)
