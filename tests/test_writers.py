"""The writer of each row: several processes write one run (as the ranks of a distributed
job do), and every view and raw table tells which one logged each row, before and after
compaction, with parts written before lakestore kept the writer still readable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import lakestore
from lakestore.storage import open_storage

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

    assert lakestore.compact(store_uri, grace=0) == 3  # runs, params, metrics: no tags
    with lakestore.connect(store_uri) as store:
        assert _per_writer(store) == before
        assert store.sql("SELECT writer_id FROM params").fetchall() == [(first,)]
        found = store.search_runs("metrics.loss >= 0 and params.world_size = 4")
        assert found.select("run_id").fetchall() == [(run_id,)]

    storage = open_storage(store_uri)
    [part] = storage.glob("compacted/metrics/experiment=ddp/*.parquet")
    with storage.open_read(part) as file:
        metadata = pq.ParquetFile(file).metadata
    column = metadata.row_group(0).column(metadata.schema.names.index("writer_id"))
    assert "RLE_DICTIONARY" in column.encodings


def _strip_writers(uri: str, part: str) -> None:
    """Replace ``part`` by the part lakestore wrote before parts kept the writer: the same
    rows and footer metadata, no writer_id column, as the next generation (a part never
    changes under its name)."""
    path = Path(uri) / part
    table = pq.read_table(path)
    metadata = pq.read_metadata(path).metadata
    table = table.drop_columns(["writer_id"]).replace_schema_metadata(metadata)
    pq.write_table(table, path.with_name("part-0000000002.parquet"))
    path.unlink()


@pytest.mark.parametrize("table", ["metrics", "params", "tags"])
def test_parts_without_writers_read_as_null(tmp_path: Path, table: str) -> None:
    uri = str(tmp_path)
    old_runs, new_runs = [], []
    for runs, experiment in ((old_runs, "old"), (old_runs, "old"), (new_runs, "new")):
        with lakestore.start_run(store=uri, experiment=experiment, tags={"t": "x"}) as run:
            run.log_param("p", 1)
            run.log_metric("m", 1.0)
        runs.append(run.run_id)
    lakestore.compact(uri, grace=0)
    [old_part] = open_storage(uri).glob(f"compacted/{table}/experiment=old/*.parquet")
    _strip_writers(uri, old_part)
    with lakestore.start_run(old_runs[0], store=uri, tags={"t": "y"}) as resumed:
        resumed.log_metric("m", 2.0, step=1)
        resumed.log_param("q", 2)
    writer = resumed._writer.writer_id

    def writers() -> list[tuple[str, str | None]]:
        with lakestore.connect(uri) as store:
            rows = store.sql(f"SELECT run, writer_id FROM {table}_log").fetchall()
            view = store.sql(f"SELECT run_id, writer_id FROM {table}").fetchall()
            assert set(view) <= set(rows)
            assert len(store.search_runs("metrics.m >= 1").fetchall()) == 3
        return rows

    for _ in range(2):  # as read, then once the old part is merged with the new files
        rows = writers()
        old_rows = [writer_id for run_id, writer_id in rows if run_id == old_runs[1]]
        assert old_rows
        assert set(old_rows) == {None}
        assert (old_runs[0], writer) in rows
        assert all(writer_id is not None for run_id, writer_id in rows if run_id in new_runs)
        lakestore.compact(uri, grace=0)
