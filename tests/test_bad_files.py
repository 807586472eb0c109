"""Corrupt and foreign files in a store: lakestore's readers skip them with a warning that
names them, and queries, searches, compaction and resuming return exactly the good rows."""

from __future__ import annotations

import io
import os
import subprocess
import warnings
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

import lakestore
from lakestore.errors import UnreadableFileWarning
from lakestore.storage import open_storage

GOOD_METRICS = [("a", 10, 45.0), ("b", 10, 1045.0)]  # run name, points, sum of values


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


BAD_CONTENTS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncated,
    "garbage": lambda good: os.urandom(700),
    "empty": lambda good: b"",
    "csv": lambda good: b"key,value,step\nloss,1.0,0\n",
    "other columns": lambda good: _parquet(pa.table({"epoch": [1, 2], "note": ["x", "y"]})),
    "wrong types": lambda good: _parquet(
        pa.table({"key": ["loss"], "value": ["high"], "step": [0], "timestamp": [0]})
    ),
}


def _log(uri: str) -> dict[str, str]:
    """Two runs of ten points in three flushes each; their ids by name."""
    ids = {}
    for name, offset in (("a", 0.0), ("b", 100.0)):
        with lakestore.start_run(store=uri, experiment="e", run_name=name) as run:
            run.log_param("lr", 0.1)
            for step in range(10):
                run.log_metric("loss", offset + step, step=step)
                if step % 4 == 3:
                    run.flush()
        ids[name] = run.run_id
    return ids


def _put(uri: str, relative: str, data: bytes) -> None:
    if uri.startswith("s3://"):
        s3fs.S3FileSystem().pipe_file(f"{uri}/{relative}", data)
    else:
        path = os.path.join(uri, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)


def _exists(uri: str, relative: str) -> bool:
    return open_storage(uri).get(relative) is not None


def _a_run_file(uri: str, run_id: str) -> bytes:
    storage = open_storage(uri)
    return storage.get(storage.glob(f"metrics/experiment=e/run={run_id}/*.parquet")[0]) or b""


def _summed(store: lakestore.Store) -> list[tuple[str, int, float]]:
    table = store.arrow(
        "SELECT r.run_name, count(*), sum(m.value) FROM metrics AS m JOIN runs AS r "
        "USING (run_id) GROUP BY ALL ORDER BY 1"
    )
    assert table is not None
    return [tuple(row.values()) for row in table.to_pylist()]


def _check_every_reader(
    uri: str, ids: dict[str, str], bad: str, *, kept: bool = True, warned: bool = False
) -> None:
    """Queries, search, history, resuming and compaction give exactly the good rows, and
    warn about ``bad`` (a root-relative path), unless ``warned`` already (a file is
    reported once a process); it stays in the store if ``kept``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lakestore.connect(uri) as store:
            assert _summed(store) == GOOD_METRICS
            found = store.search_runs("metrics.loss > 5", order_by=["run_name"])
            assert found.select("run_name", '"metrics.loss"').fetchall() == [
                ("a", 9.0),
                ("b", 109.0),
            ]
            history = store.metric_history(ids["a"], "loss").fetchall()
            assert [row[4] for row in history] == list(range(10))
            assert store.compare([ids["a"], ids["b"]]).params.fetchall() == [("lr", "0.1", "0.1")]
    named = [str(w.message) for w in caught if issubclass(w.category, UnreadableFileWarning)]
    assert warned or any(bad in message for message in named), named

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableFileWarning)
        with lakestore.start_run(ids["a"], store=uri) as resumed:
            assert resumed.run_name == "a"
            resumed.log_metric("loss", 0.0, step=10)
        assert lakestore.compact(uri, grace=0) >= 1
        with lakestore.connect(uri) as store:
            assert _summed(store) == [("a", 11, 45.0), ("b", 10, 1045.0)]
    assert _exists(uri, bad) == kept, "a file lakestore could not read is never deleted"


@pytest.mark.parametrize("content", list(BAD_CONTENTS))
@pytest.mark.parametrize("position", ["first", "last"])
def test_a_bad_file_with_a_writer_name_is_skipped(tmp_path, content: str, position: str) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    writer = ("0" if position == "first" else "f") * 32
    bad = f"metrics/experiment=e/run={ids['a']}/{writer}-000000.parquet"
    _put(uri, bad, BAD_CONTENTS[content](_a_run_file(uri, ids["a"])))
    local_check = content in ("truncated", "garbage", "empty", "csv")
    if local_check:
        # Found by its magic bytes when listed, so that even a relation fetched later reads.
        with pytest.warns(UnreadableFileWarning, match="not a whole Parquet file"):
            store = lakestore.connect(uri)
        with store:
            assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(20,)]
    _check_every_reader(uri, ids, bad, warned=local_check)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("data.parquet", "a run file's rows"),  # right columns, name not a writer's
        ("notes.csv", "csv"),
        ("0123-000001.parquet", "garbage"),
    ],
)
def test_a_file_named_otherwise_is_left_out(store_uri: str, name: str, data: str) -> None:
    ids = _log(store_uri)
    bad = f"metrics/experiment=e/run={ids['a']}/{name}"
    good = _a_run_file(store_uri, ids["a"])
    _put(store_uri, bad, good if data == "a run file's rows" else BAD_CONTENTS[data](good))
    if name.endswith(".parquet"):
        _check_every_reader(store_uri, ids, bad)
    else:  # not even listed
        with lakestore.connect(store_uri) as store:
            assert _summed(store) == GOOD_METRICS


def test_a_truncated_file_on_s3_is_skipped(s3_env: str, request: pytest.FixtureRequest) -> None:
    from tests.conftest import fresh_store_uri

    uri = fresh_store_uri("s3", request)
    ids = _log(uri)
    bad = f"metrics/experiment=e/run={ids['b']}/{'f' * 32}-000000.parquet"
    _put(uri, bad, _truncated(_a_run_file(uri, ids["b"])))
    _check_every_reader(uri, ids, bad)


@pytest.mark.parametrize("kind", ["garbage part", "garbage summary", "foreign part name"])
def test_bad_files_in_the_compacted_tree_are_skipped(tmp_path, kind: str) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    lakestore.compact(uri, grace=0)
    storage = open_storage(uri)
    [part] = storage.glob("compacted/metrics/experiment=e/*.parquet")
    [summary] = storage.glob("compacted/metric_summaries/experiment=e/*.parquet")
    if kind == "garbage part":
        bad = "compacted/metrics/experiment=e/part-0000000009.parquet"
        _put(uri, bad, os.urandom(500))
    elif kind == "garbage summary":  # the part is summarised from its rows instead
        bad = summary
        _put(uri, bad, _truncated(storage.get(summary) or b""))
    else:
        bad = "compacted/metrics/experiment=e/extra.parquet"
        _put(uri, bad, storage.get(part) or b"")
    # A summary is deleted with its part, once a compaction has merged the part again.
    _check_every_reader(uri, ids, bad, kept=kind != "garbage summary")


def test_the_cli_warns_on_one_line_and_check_lists_bad_files(tmp_path) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    bad = f"metrics/experiment=e/run={ids['a']}/{'f' * 32}-000000.parquet"
    foreign = f"params/experiment=e/run={ids['b']}/notes.parquet"
    _put(uri, bad, b"garbage")
    _put(uri, foreign, _a_run_file(uri, ids["a"]))
    environment = dict(os.environ)
    query = "SELECT count(*) AS n, sum(value) AS total FROM metrics"
    shown = subprocess.run(
        ["lakestore", "query", query, "-s", uri, "-f", "csv"],
        capture_output=True, text=True, timeout=120, env=environment,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ['"n","total"', "20,1090"]
    lines = shown.stderr.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("warning: skipping ") for line in lines)
    assert any(f"{uri}/{bad}: it is not a whole Parquet file" in line for line in lines)
    assert any(
        f"{uri}/{foreign}: its name is not that of a lakestore file" in line for line in lines
    )

    checked = subprocess.run(
        ["lakestore", "check", "-s", uri], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 1
    assert sorted(line.split(": ")[0] for line in checked.stdout.splitlines()) == sorted(
        [f"{uri}/{bad}", f"{uri}/{foreign}"]
    )
    assert "2 file(s) to move out of the store" in checked.stderr
    os.remove(f"{uri}/{bad}")
    os.remove(f"{uri}/{foreign}")
    clean = subprocess.run(["lakestore", "check", "-s", uri], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
