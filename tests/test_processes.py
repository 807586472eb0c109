"""Real processes: concurrent writers, writers killed with SIGKILL, runs ended at exit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lakestore
from tests.conftest import fresh_store_uri
from tests.readers import READERS, has_files

CHILD = str(Path(__file__).with_name("child_writer.py"))


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out.strip()


@pytest.mark.slow
def test_concurrent_writers_lose_and_duplicate_nothing(store_uri: str) -> None:
    rows = 5_000
    with lakestore.start_run(store=store_uri, experiment="shared") as first:
        pass
    writers = [("same-run", first.run_id)] * 4 + [("own-run", "new")] * 4
    processes = [
        _spawn("write", store_uri, "shared", run_id, f"rank{index}", str(rows), "0.02")
        for index, (_, run_id) in enumerate(writers)
    ]
    run_ids = [_finish(process) for process in processes]
    assert run_ids[:4] == [first.run_id] * 4
    assert len(set(run_ids[4:])) == 4

    for read in READERS.values():
        metrics = read(store_uri, "metrics")
        assert len(metrics) == rows * len(writers)
        by_writer: dict[str, list[int]] = {}
        writer_ids: dict[str, set[str]] = {}
        for experiment, run, key, _, step, _, writer_id in metrics:
            assert experiment == "shared"
            by_writer.setdefault(key, []).append(step)
            writer_ids.setdefault(key, set()).add(writer_id)
            assert run == run_ids[int(key.removeprefix("rank"))]
        assert {key: sorted(steps) for key, steps in by_writer.items()} == {
            f"rank{index}": list(range(rows)) for index in range(len(writers))
        }
        # Each process is one writer, named in every row it logged.
        assert all(len(ids) == 1 for ids in writer_ids.values())
        assert len(set().union(*writer_ids.values())) == len(writers)
    with lakestore.connect(store_uri) as store:
        assert store.sql("SELECT count(*) FROM runs").fetchall() == [(5,)]
        assert store.sql("SELECT DISTINCT status FROM runs").fetchall() == [("FINISHED",)]


def _metric_files(uri: str) -> int:
    if uri.startswith("s3://"):
        import s3fs

        return len(s3fs.S3FileSystem(use_listings_cache=False).glob(f"{uri}/metrics/*/*/*.parquet"))
    return len(list(Path(uri, "metrics").glob("*/*/*.parquet")))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "kill_after"),
    [("local", 0.0), ("local", 0.05), ("local", 0.2), ("local", 0.5), ("s3", 0.0), ("s3", 0.2)],
)
def test_a_killed_writer_leaves_a_store_every_reader_reads(
    backend: str, kill_after: float, request: pytest.FixtureRequest
) -> None:
    store_uri = fresh_store_uri(backend, request)
    process = _spawn("forever", store_uri, "0.02")
    assert process.stdout is not None
    run_id = process.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while _metric_files(store_uri) < 3:
        assert time.monotonic() < deadline, "the writer flushed nothing"
        time.sleep(0.01)
    time.sleep(kill_after + random.uniform(0, 0.02))
    os.kill(process.pid, signal.SIGKILL)
    out, _ = process.communicate()
    flushed = max([0, *(int(line) for line in out.split())])

    results = {name: read(store_uri, "metrics") for name, read in READERS.items()}
    assert results["polars"] == results["duckdb"] == results["pyarrow"]
    steps = [row[4] for row in results["duckdb"]]
    assert sorted(steps) == list(range(len(steps))), "flushed rows must be a gapless prefix"
    assert len(steps) >= max(flushed, 1), "rows flushed before the kill are missing"
    for table in ("runs", "params", "tags"):
        if has_files(store_uri, table):
            for read in READERS.values():
                read(store_uri, table)
    with lakestore.connect(store_uri) as store:
        assert store.sql("SELECT run_id, status FROM runs").fetchall() == [(run_id, "RUNNING")]


def test_temporary_files_are_invisible_to_readers(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metric("loss", 1.0)
    folder = next(Path(uri, "metrics").glob("*/*"))
    whole = next(folder.glob("*.parquet")).read_bytes()
    # What a writer killed in the middle of a write leaves behind: a partial temporary file.
    (folder / f".{run.run_id}-000009.parquet.{'0' * 32}.tmp").write_bytes(whole[: len(whole) // 2])
    for read in READERS.values():
        assert [row[2:5] for row in read(uri, "metrics")] == [("loss", 1.0, 0)]
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("how", "status", "returncode"),
    [("normal", "FINISHED", 0), ("raise", "FAILED", 1), ("interrupt", "KILLED", 1)],
)
def test_runs_left_open_are_ended_and_flushed_at_exit(
    store_uri: str, how: str, status: str, returncode: int
) -> None:
    uri = store_uri
    process = _spawn("exit", uri, how)
    out, err = process.communicate(timeout=60)
    assert process.returncode == returncode, err
    run_id = out.strip()
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT run_id, status FROM runs").fetchall() == [(run_id, status)]
        assert store.sql("SELECT key, value, step FROM metrics").fetchall() == [("loss", 0.5, 7)]
        assert store.sql("SELECT key, value FROM params").fetchall() == [("lr", "0.1")]


def test_forked_children_leave_the_parents_run_alone(tmp_path: Path) -> None:
    uri = str(tmp_path)
    process = _spawn("fork", uri)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    run_id, *told = out.splitlines()
    assert told == [
        f"child: run {run_id} belongs to process {process.pid}; a forked process logs to it "
        f"through its own lakestore.start_run(run_id={run_id!r}, store=...), as another "
        "writer of the same run"
    ]
    with lakestore.connect(uri) as store:
        steps = [row[0] for row in store.sql("SELECT step FROM metrics ORDER BY step").fetchall()]
        events = store.sql("SELECT status FROM runs_log ORDER BY event_time").fetchall()
    assert steps == list(range(200))
    assert events == [("RUNNING",), ("FINISHED",)]


def test_a_run_is_ended_after_the_scripts_own_threads_finish(tmp_path: Path) -> None:
    uri = str(tmp_path)
    process = _spawn("thread", uri)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(20,)]
        assert store.sql("SELECT run_id, status FROM runs").fetchall() == [
            (out.strip(), "FINISHED")
        ]
