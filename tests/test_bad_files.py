"""Corrupt and foreign files in a store: lakestore's readers skip them with a warning that
names them, and queries, searches, merges and resuming return exactly the good rows."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

import lakestore
from lakestore import layout
from lakestore.errors import UnreadableFileWarning
from lakestore.layout import ExperimentFiles
from lakestore.storage import Storage, open_storage

GOOD_METRICS = [("a", 10, 45.0), ("b", 10, 1045.0)]  # run name, points, sum of values
RESUMED_METRICS = [("a", 11, 45.0), ("b", 10, 1045.0)]  # after one more point of loss 0


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _words_for_numbers(good: bytes) -> bytes:
    """The rows of ``good`` (a Parquet file) with the word "high" in every column that is
    not text: no reader can take it for a number or a time."""
    table = pq.read_table(pa.BufferReader(good))
    words = pa.array(["high"] * table.num_rows)
    return _parquet(
        pa.table(
            {
                name: column if pa.types.is_string(column.type) else words
                for name, column in zip(table.column_names, table.columns, strict=True)
            }
        )
    )


def _text_for_numbers(good: bytes) -> bytes:
    """The rows of ``good`` with every column that is not text written as text ("1.0"),
    which DuckDB would cast back to numbers and times, and the other readers refuse."""
    table = pq.read_table(pa.BufferReader(good))
    return _parquet(table.cast(pa.schema([(name, pa.string()) for name in table.column_names])))


BAD_CONTENTS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncated,
    "garbage": lambda good: os.urandom(700),
    "empty": lambda good: b"",
    "csv": lambda good: b"key,value,step\nloss,1.0,0\n",
    "other columns": lambda good: _parquet(pa.table({"epoch": [1, 2], "note": ["x", "y"]})),
    "wrong types": _words_for_numbers,
    "numbers as text": _text_for_numbers,
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
    return relative in open_storage(uri).list_names(relative.rsplit("/", 1)[0])


def _experiment(uri: str) -> tuple[Storage, ExperimentFiles]:
    """The store, and the files of its experiment "e" as readers find them now."""
    storage = open_storage(uri)
    folder = layout.experiment_folder("e")
    return storage, layout.list_experiments(storage, folder)[folder]


def _an_inbox_file(uri: str, run_id: str) -> bytes:
    """The content of one of the run's metrics files in the inbox."""
    storage, found = _experiment(uri)
    paths = [
        p for p, entry in found.inbox.items() if (entry.table, entry.run) == ("metrics", run_id)
    ]
    return storage.get(paths[0]) or b""


def _summed(store: lakestore.Store) -> list[tuple[str, int, float]]:
    table = store.arrow(
        "SELECT r.run_name, count(*), sum(m.value) FROM metrics AS m JOIN runs AS r "
        "USING (run_id) GROUP BY ALL ORDER BY 1"
    )
    assert table is not None
    return [tuple(row.values()) for row in table.to_pylist()]


def _named(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UnreadableFileWarning)]


def _check_every_reader(
    uri: str, ids: dict[str, str], bad: str, *, kept: bool = True, warning: str = "now"
) -> None:
    """Queries, search, history, resuming and merging give exactly the good rows; ``bad``
    (a root-relative path) stays in the store if ``kept``. A warning names ``bad`` while
    reading if ``warning`` is "now"; "earlier" if it was named before (a file is reported
    once a process); "never" if no file may be reported at all. ``lakestore check`` lists
    ``bad`` unless "never"."""
    if warning != "never":
        assert open_storage(uri).path(bad) in [path for path, _ in lakestore.check(uri)]
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
    named = _named(caught)
    if warning == "now":
        assert any(bad in message for message in named), named
    if warning == "never":
        assert named == []

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lakestore.start_run(ids["a"], store=uri) as resumed:
            assert resumed.run_name == "a"
            resumed.log_metric("loss", 0.0, step=10)
        assert lakestore.compact(uri, grace=0) >= 1
        with lakestore.connect(uri) as store:
            assert _summed(store) == RESUMED_METRICS
    if warning == "never":
        assert _named(caught) == []
    assert _exists(uri, bad) == kept


@pytest.mark.parametrize("content", list(BAD_CONTENTS))
@pytest.mark.parametrize("position", ["first", "last"])
def test_a_bad_inbox_file_with_a_writer_name_is_skipped(
    tmp_path, content: str, position: str
) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    # The first or the last of the experiment's metrics files in the order they are listed.
    run_id = min(ids.values()) if position == "first" else max(ids.values())
    writer = ("0" if position == "first" else "f") * 32
    bad = layout.inbox_path("e", "metrics", run_id, writer, 0)
    _put(uri, bad, BAD_CONTENTS[content](_an_inbox_file(uri, ids["a"])))
    # Found by its footer when listed, so that even a relation fetched later reads.
    with lakestore.connect(uri) as store:
        with pytest.warns(UnreadableFileWarning, match=f"skipping .*{bad}"):
            relation = store.sql("SELECT count(*), sum(value) FROM metrics")
        assert relation.fetchall() == [(20, 1090.0)]
    # No merge takes it: it stays in the inbox, and readers keep skipping it.
    _check_every_reader(uri, ids, bad, warning="earlier")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("inbox/metrics/data.parquet", "an inbox file's rows"),
        ("inbox/metrics/notes.csv", "csv"),
        ("inbox/metrics/0123-000001.parquet", "garbage"),
        (f"inbox/metrics/{'f' * 32}-000000.parquet", "an inbox file's rows"),  # no run id
        (f"inbox/metric_summaries/r.{'f' * 32}-000000.parquet", "an inbox file's rows"),
        ("data.parquet", "an inbox file's rows"),
    ],
)
def test_a_file_named_otherwise_is_left_out(store_uri: str, name: str, data: str) -> None:
    ids = _log(store_uri)
    bad = f"{layout.experiment_folder('e')}/{name}"
    good = _an_inbox_file(store_uri, ids["a"])
    _put(store_uri, bad, good if data == "an inbox file's rows" else BAD_CONTENTS[data](good))
    _check_every_reader(store_uri, ids, bad)


@pytest.mark.parametrize("content", ["truncated", "numbers as text"])
def test_a_bad_inbox_file_on_s3_is_skipped(
    s3_env: str, request: pytest.FixtureRequest, content: str
) -> None:
    from tests.conftest import fresh_store_uri

    uri = fresh_store_uri("s3", request)
    ids = _log(uri)
    bad = layout.inbox_path("e", "metrics", ids["b"], "f" * 32, 0)
    _put(uri, bad, BAD_CONTENTS[content](_an_inbox_file(uri, ids["b"])))
    _check_every_reader(uri, ids, bad)


def _merged(uri: str) -> tuple[dict[str, str], Storage, ExperimentFiles]:
    """The runs of :func:`_log`, merged into parts; their ids, the store and its files."""
    ids = _log(uri)
    assert lakestore.compact(uri, grace=0) >= 1
    storage, found = _experiment(uri)
    assert found.snapshot is not None
    assert found.unmerged() == []
    return ids, storage, found


def _publish(uri: str, found: ExperimentFiles, parts: dict[str, list[layout.Part]]) -> str:
    """Publish ``parts`` as the experiment's next snapshot; its path."""
    snapshot = found.snapshot
    assert snapshot is not None
    following = layout.Snapshot(
        snapshot.experiment, snapshot.generation + 1, parts, dict(snapshot.merged)
    )
    path = layout.snapshot_path(found.folder, following.generation)
    _put(uri, path, _parquet(following.to_table()))
    return path


@pytest.mark.parametrize("content", list(BAD_CONTENTS))
@pytest.mark.parametrize("position", ["first", "last"])
def test_a_bad_part_the_snapshot_names_is_skipped(tmp_path, content: str, position: str) -> None:
    uri = str(tmp_path / "store")
    ids, storage, found = _merged(uri)
    assert found.snapshot is not None
    parts = {table: list(listed) for table, listed in found.snapshot.parts.items()}
    [good] = parts["metrics"]
    bad = layout.part_path(found.folder, "metrics", found.snapshot.generation + 1)
    _put(uri, bad, BAD_CONTENTS[content](storage.get(good.path) or b""))
    parts["metrics"].insert(0 if position == "first" else 1, layout.Part(bad, good.rows))
    _publish(uri, found, parts)
    # Merges leave it as it is, named by every snapshot after: readers keep skipping it.
    _check_every_reader(uri, ids, bad)
    _, found = _experiment(uri)
    assert found.snapshot is not None
    assert bad in found.snapshot.live_parts("metrics")


@pytest.mark.parametrize("content", list(BAD_CONTENTS))
def test_a_bad_summary_is_skipped_and_rebuilt_from_the_parts(tmp_path, content: str) -> None:
    uri = str(tmp_path / "store")
    ids, storage, found = _merged(uri)
    assert found.snapshot is not None
    [bad] = found.snapshot.live_parts("metric_summaries")
    _put(uri, bad, BAD_CONTENTS[content](storage.get(bad) or b""))
    # The next merge summarises the metrics parts again; no snapshot needs it after that.
    _check_every_reader(uri, ids, bad, kept=False)
    _, found = _experiment(uri)
    assert found.snapshot is not None
    assert len(found.snapshot.live_parts("metric_summaries")) == 1


@pytest.mark.parametrize("kind", ["foreign name", "left by an earlier merge", "merge under way"])
def test_a_file_in_parts_the_snapshot_does_not_name_is_not_read(tmp_path, kind: str) -> None:
    uri = str(tmp_path / "store")
    ids, storage, found = _merged(uri)
    assert found.snapshot is not None
    [good] = found.snapshot.live_parts("metrics")
    generation = found.snapshot.generation
    if kind == "foreign name":  # reported: plain readers of parts/ would read it
        bad = f"{found.folder}/parts/metrics/extra.parquet"
        _put(uri, bad, storage.get(good) or b"")
        _check_every_reader(uri, ids, bad)
    elif kind == "left by an earlier merge":  # deleted by the next merge
        bad = layout.part_path(found.folder, "metrics", generation)
        _put(uri, bad, storage.get(good) or b"")
        _check_every_reader(uri, ids, bad, kept=False, warning="never")
    else:  # of a generation later than the next merge's: left to the merge that writes it
        bad = layout.part_path(found.folder, "metrics", generation + 2)
        _put(uri, bad, os.urandom(500))
        _check_every_reader(uri, ids, bad, warning="never")


@pytest.mark.parametrize("content", list(BAD_CONTENTS))
def test_a_bad_newest_snapshot_is_skipped_and_stops_merges(
    tmp_path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    uri = str(tmp_path / "store")
    ids, storage, found = _merged(uri)
    assert found.snapshot is not None
    assert found.snapshot_file is not None
    with lakestore.start_run(ids["a"], store=uri) as resumed:
        resumed.log_metric("loss", 0.0, step=10)
    bad = layout.snapshot_path(found.folder, found.snapshot.generation + 1)
    _put(uri, bad, BAD_CONTENTS[content](storage.get(found.snapshot_file) or b""))
    files = storage.list_files(found.folder)

    # Readers fall back to the snapshot before it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lakestore.connect(uri) as store:
            assert _summed(store) == RESUMED_METRICS
            searched = store.search_runs("metrics.loss > 5", order_by=["run_name"])
            assert searched.select("run_name").fetchall() == [("b",)]  # a ends at 0
            history = store.metric_history(ids["a"], "loss").fetchall()
            assert [row[4] for row in history] == list(range(11))
    named = _named(caught)
    assert any(f"{bad}: it is not a readable snapshot" in message for message in named), named

    # Merges leave the experiment alone, and say why.
    with caplog.at_level(logging.WARNING, logger="lakestore"):
        assert lakestore.compact(uri, grace=0) == 0
    folder = storage.path(found.folder)
    assert f"lakestore does not merge {folder}: its newest snapshot cannot be read" in caplog.text
    assert storage.list_files(found.folder) == files
    assert [path for path, _ in lakestore.check(uri)] == [storage.path(bad)]

    os.remove(os.path.join(uri, bad))
    assert lakestore.compact(uri, grace=0) >= 1
    with lakestore.connect(uri) as store:
        assert _summed(store) == RESUMED_METRICS
    assert lakestore.check(uri) == []


def test_the_cli_warns_on_one_line_and_check_lists_bad_files(tmp_path) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    bad = layout.inbox_path("e", "metrics", ids["a"], "f" * 32, 0)
    foreign = f"{layout.experiment_folder('e')}/inbox/params/notes.parquet"
    _put(uri, bad, b"garbage")
    _put(uri, foreign, _an_inbox_file(uri, ids["a"]))
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
    assert any(f"{uri}/{bad}: it is not a readable Parquet file" in line for line in lines)
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


def test_a_folder_named_like_a_file_and_a_path_not_utf8_are_skipped_and_checked(
    tmp_path,
) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    inbox = os.path.join(uri, layout.experiment_folder("e"), "inbox", "metrics")
    folder = os.path.join(inbox, f"{'a' * 32}.{'b' * 32}-000000.parquet")
    os.mkdir(folder)
    not_utf8 = os.path.join(os.fsencode(uri), b"experiments", b"caf\xe9", b"inbox", b"metrics")
    os.makedirs(not_utf8)
    copy = os.path.join(not_utf8, f"{ids['a']}.{'c' * 32}-000000.parquet".encode())
    with open(copy, "wb") as file:
        file.write(_an_inbox_file(uri, ids["a"]))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableFileWarning)
        with lakestore.connect(uri) as store:
            assert _summed(store) == GOOD_METRICS
        assert lakestore.compact(uri, grace=0) > 0
        with lakestore.connect(uri) as store:
            assert _summed(store) == GOOD_METRICS
    assert any("its path is not UTF-8" in str(warning.message) for warning in caught)

    checked = subprocess.run(["lakestore", "check", "-s", uri], capture_output=True, timeout=120)
    assert checked.returncode == 1
    listed = checked.stdout.decode("utf-8", "surrogateescape")
    assert f"{folder}: it is a folder named like a Parquet file" in listed
    assert "its path is not UTF-8, which no engine reads" in listed
    assert "2 file(s) to move out of the store" in checked.stderr.decode()


def _as_a_user_who_may_not_read_everything() -> list[str]:
    """The command prefix that runs a process as this user, but without root's power to
    read any file: a mode-000 file is then unreadable, as it is to every other user."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


def test_a_file_this_process_may_not_read_is_skipped(tmp_path) -> None:
    uri = str(tmp_path / "store")
    ids = _log(uri)
    bad = layout.inbox_path("e", "metrics", ids["b"], "f" * 32, 0)
    _put(uri, bad, _an_inbox_file(uri, ids["a"]))  # rows counted twice if it were read
    os.chmod(os.path.join(uri, bad), 0)
    check = (
        "from tests.test_bad_files import _check_every_reader\n"
        f"_check_every_reader({uri!r}, {ids!r}, {bad!r})\n"
        f"import lakestore; print(lakestore.check({uri!r}))"
    )
    done = subprocess.run(
        [*_as_a_user_who_may_not_read_everything(), sys.executable, "-c", check],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "this process may not read it (Permission denied)" in done.stdout
