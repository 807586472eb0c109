"""Real processes: concurrent writers, writers killed with SIGKILL, runs ended at exit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import lakestore
from tests.conftest import fresh_store_uri
from tests.readers import READERS, has_files

CHILD = str(Path(__file__).with_name("child_writer.py"))


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(process: subprocess.Popen[str]) -> str:
    """The next line the process prints; fails with its error output if it exits first."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else "no output"
    return line.strip()


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out.strip()


@pytest.mark.slow
def test_sixteen_writers_with_readers_and_compaction_lose_and_duplicate_nothing(
    store_uri: str,
) -> None:
    """Distributed-training style: 8 ranks of one run and 8 runs of their own, all started at
    once in a new store and experiment, while queries and compactions run."""
    rows = 2_000 if store_uri.startswith("s3://") else 20_000
    interval = "0.2" if store_uri.startswith("s3://") else "0.02"
    grace = 15.0 if store_uri.startswith("s3://") else 1.0  # outlasts a query (QUERYING.md)
    rank0 = _spawn("halves", store_uri, "ddp", "new", "rank0", str(rows), interval)
    own_runs = [
        _spawn("halves", store_uri, "ddp", "new", f"rank{index}", str(rows), interval)
        for index in range(8, 16)
    ]
    assert rank0.stdout is not None
    shared_run = rank0.stdout.readline().strip()  # as a launcher passes rank 0's run id on
    ranks = [
        _spawn("halves", store_uri, "ddp", shared_run, f"rank{index}", str(rows), interval)
        for index in range(1, 8)
    ]
    processes = [rank0, *ranks, *own_runs]
    run_ids = [shared_run] + [_line(process) for process in processes[1:]]
    stop = threading.Event()
    errors: list[BaseException] = []
    checks = []

    def compact_repeatedly() -> None:
        while not stop.is_set():
            try:
                lakestore.compact(store_uri, grace=grace)
            except BaseException as error:  # reported by the test below
                errors.append(error)
                return

    def check() -> None:
        with lakestore.connect(store_uri) as store:
            rows, distinct = store.sql(
                "SELECT count(*), count(DISTINCT (writer_id, key, step)) FROM metrics"
            ).fetchall()[0]
        assert rows == distinct, "a query saw a row twice"
        checks.append(rows)

    compactor = threading.Thread(target=compact_repeatedly)
    compactor.start()
    try:
        for process in processes:  # every writer is half-way and waits
            assert _line(process) == "half"
        for _ in range(3):
            check()
        for process in processes:
            process.stdin.write("go on\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        while any(process.poll() is None for process in processes):
            check()
        for process in processes:
            _finish(process)
        check()
    finally:
        stop.set()
        compactor.join()
    assert not errors, errors
    lakestore.compact(store_uri, grace=0)  # plain readers read replaced files until deleted
    assert run_ids[:8] == [shared_run] * 8
    assert len(set(run_ids[8:])) == 8
    run_of_key = {f"rank{index}": run_id for index, run_id in enumerate(run_ids)}

    for read in READERS.values():
        metrics = read(store_uri, "metrics")
        assert len(metrics) == rows * 16
        steps: dict[str, list[int]] = {}
        writer_ids: dict[str, set[str]] = {}
        for experiment, run, key, _, step, _, writer_id in metrics:
            assert (experiment, run) == ("ddp", run_of_key[key])
            steps.setdefault(key, []).append(step)
            writer_ids.setdefault(key, set()).add(writer_id)
        assert {key: sorted(logged) for key, logged in steps.items()} == {
            key: list(range(rows)) for key in run_of_key
        }
        # Each process is one writer, named in every row it logged.
        assert all(len(ids) == 1 for ids in writer_ids.values())
        assert len(set().union(*writer_ids.values())) == 16
    with lakestore.connect(store_uri) as store:
        # Every row names its writer, and each writer (rank) logged exactly its own key.
        assert store.sql(
            "SELECT count(DISTINCT writer_id), count(DISTINCT (writer_id, key)), count(*) "
            "FROM metrics WHERE writer_id IS NOT NULL"
        ).fetchall() == [(16, 16, rows * 16)]
        assert store.sql(
            "SELECT count(*) FROM (SELECT DISTINCT m.writer_id, r.host FROM metrics AS m "
            "JOIN runs_log AS r USING (writer_id))"
        ).fetchall() == [(16,)]
        assert store.sql("SELECT count(*), any_value(status) FROM runs").fetchall() == [
            (9, "FINISHED")
        ]
        assert store.sql("SELECT experiment, runs FROM experiments").fetchall() == [("ddp", 9)]
    assert checks[-1] == rows * 16
    print(f"{len(checks)} concurrent queries checked")


def _metric_files(uri: str) -> int:
    if uri.startswith("s3://"):
        import s3fs

        pattern = f"{uri}/experiments/*/inbox/metrics/*.parquet"
        return len(s3fs.S3FileSystem(use_listings_cache=False).glob(pattern))
    return len(list(Path(uri, "experiments").glob("*/inbox/metrics/*.parquet")))


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
    written = next(Path(uri, "experiments").glob("*/inbox/metrics/*.parquet"))
    whole = written.read_bytes()
    # What a writer killed in the middle of a write leaves behind: a partial temporary file.
    partial = f".{run.run_id}.{'1' * 32}-000009.parquet.{'0' * 32}.tmp"
    (written.parent / partial).write_bytes(whole[: len(whole) // 2])
    for read in READERS.values():
        assert [row[2:5] for row in read(uri, "metrics")] == [("loss", 1.0, 0)]
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("how", "status", "returncode"),
    [
        ("normal", "FINISHED", 0),
        ("raise", "FAILED", 1),
        ("interrupt", "KILLED", -signal.SIGINT),  # Python's own exit for an uncaught Ctrl-C
    ],
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
    own = [line.split()[-1] for line in told if line.startswith("own run ")]
    assert sorted(told) == sorted([
        f"child: run {run_id} belongs to process {process.pid}; a forked process logs to it "
        f"through its own lakestore.start_run(run_id={run_id!r}, store=...), as another "
        "writer of the same run",
        *(f"own run {child_run}" for child_run in own),
    ])  # fmt: skip
    assert len(own) == 1  # a child's own run ends: it does not wait on the parent's threads
    with lakestore.connect(uri) as store:
        steps = store.sql(
            "SELECT step FROM metrics WHERE run_id = ? ORDER BY step", params=[run_id]
        )
        events = store.sql(
            "SELECT status FROM runs_log WHERE run = ? ORDER BY event_time", params=[run_id]
        ).fetchall()
        child = store.sql("SELECT key, value FROM metrics WHERE run_id = ?", params=[own[0]])
        child_params = store.sql("SELECT value FROM params ORDER BY value").fetchall()
        assert [row[0] for row in steps.fetchall()] == list(range(200))
        assert child.fetchall() == [("loss", -2.0)]
    assert events == [("RUNNING",), ("FINISHED",)]
    assert child_params == [("0.1",), ("0.2",)]


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
