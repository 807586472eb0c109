"""The logging API: run life cycle, validation, params, resume and nesting."""

from __future__ import annotations

import array
import datetime as dt
import decimal
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import lakestore
from lakestore import batches, spec
from lakestore.errors import (
    FormatVersionError,
    InvalidNameError,
    InvalidValueError,
    NoActiveRunError,
    ParamConflictError,
    RunAlreadyActiveError,
    RunEndedError,
    RunNotFoundError,
    StoreError,
)
from tests.readers import read_duckdb


def _runs(uri: str) -> dict[str, dict]:
    with lakestore.connect(uri) as store:
        rows = store.sql("SELECT * FROM runs").to_arrow_table().to_pylist()
    return {row["run_id"]: row for row in rows}


def _metrics(uri: str) -> list[tuple]:
    return [(row[2], row[3], row[4]) for row in read_duckdb(uri, "metrics")]


def test_readme_example_logs_params_metrics_and_tags(store_uri: str) -> None:
    lakestore.set_store(store_uri)
    with lakestore.start_run(
        experiment="mnist", run_name="baseline", tags={"team": "vision"}
    ) as run:
        run.log_params({"lr": 0.01, "layers": 3, "optimizer": "adam"})
        for step in range(100):
            run.log_metric("loss", 1 / (step + 1), step=step)
            run.log_metrics({"acc": step / 100, "f1": step / 200}, step=step)

    with lakestore.connect() as store:
        (status, name) = store.sql("SELECT status, run_name FROM runs").fetchall()[0]
        assert (status, name) == ("FINISHED", "baseline")
        counts = dict(store.sql("SELECT key, count(*) FROM metrics GROUP BY key").fetchall())
        assert counts == {"loss": 100, "acc": 100, "f1": 100}
        assert store.sql(
            "SELECT run_id FROM params WHERE key = 'lr' AND value_float > 0.001"
        ).fetchall()
        assert store.sql("SELECT value FROM tags WHERE key = 'team'").fetchall() == [("vision",)]


def test_special_float_values_are_stored_faithfully(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        for step, value in enumerate(
            [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
        ):
            run.log_metric("x", value, step=step)
    values = [row[1] for row in sorted(_metrics(uri), key=lambda row: row[2])]
    assert values[0] == "NaN"
    assert values[1:] == [math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda run: run.log_metric("loss", "0.5"), "value '0.5' is not a number"),
        (lambda run: run.log_metric("loss", None), "value None is not a number"),
        (lambda run: run.log_metric("loss", 1.0, step=1.5), "step 1.5 is not an integer"),
        (lambda run: run.log_metric("loss", 1.0, step=2**64), "step 18446744073709551616"),
        (lambda run: run.log_metric("", 1.0), "metric key must not be empty"),
        (lambda run: run.log_metric("k" * 251, 1.0), "251 characters long"),
        (lambda run: run.log_metric(3, 1.0), "metric key must be a string, got 3"),
        (lambda run: run.log_metrics({"ok": 1.0, "bad": "x"}), "metric 'bad': value 'x'"),
        (lambda run: run.log_param("", 1), "param key must not be empty"),
        (lambda run: run.set_tag("t\x00", "v"), "contains a NUL character"),
        (lambda run: run.set_tag("t", "\ud800"), "is not valid Unicode"),
        (lambda run: run.log_metric_series("s", ["a", "b"]), "values must be numbers, got string"),
        (lambda run: run.log_metric_series("s", ["1.5", "2"]), "values must be numbers"),
        (lambda run: run.log_metric_series("s", [1.0], timestamps=[math.nan]), "timestamps cannot"),
        (
            lambda run: run.log_metric_series("s", [1.0], timestamps=[dt.datetime(2025, 1, 1)]),
            "timestamps have no time zone",
        ),
        (lambda run: run.log_metric("loss", decimal.Decimal("sNaN")), "is not a number"),
        (lambda run: run.log_metric("loss", 1.0, timestamp=math.nan), "not a finite number"),
        (lambda run: run.log_metric("loss", 1.0, timestamp=1e20), "outside years 1678 to 2262"),
        (
            lambda run: run.log_metric("loss", 1.0, timestamp=dt.datetime(2025, 1, 1)),
            "has no time zone",
        ),
        (lambda run: run.log_metric(["unhashable"], 1.0), "metric key must be a string"),
        (lambda run: run.log_metrics({("a",): 1.0}), "metric key must be a string"),
        (lambda run: run.log_param("big", 10**5000), "integer too large to store"),
        (lambda run: run.set_tags({"ok": "v", "": "x"}), "tag key must not be empty"),
        (lambda run: run.log_metric_series("s", [1.0, None]), "contain nulls"),
        (lambda run: run.log_metric_series("s", [1.0, 2.0], steps=[1]), "2 values but 1 steps"),
        (lambda run: run.end("DONE"), "status 'DONE' is not one of"),
    ],
)
def test_bad_input_is_rejected_and_nothing_else_is_lost(tmp_path: Path, call, message: str) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metric("loss", 0.25, step=0)
        run.log_metrics({"a": 1.0, "b": 2.0}, step=0)
        with pytest.raises(lakestore.LakestoreError, match=_escape(message)):
            call(run)
        run.log_metric("loss", 0.5, step=1)  # the run stays usable
    assert sorted(_metrics(uri)) == [
        ("a", 1.0, 0),
        ("b", 2.0, 0),
        ("loss", 0.25, 0),
        ("loss", 0.5, 1),
    ]
    assert _runs(uri)[run.run_id]["status"] == "FINISHED"


def _escape(message: str) -> str:
    import re

    return re.escape(message)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "must not be empty"),
        ("a\x00b", "NUL character"),
        ("x" * 241, "the limit is 240"),
        ("日" * 81, "the limit is 240"),
        ("\udcff", "not valid Unicode"),
        (42, "must be a string"),
    ],
)
def test_unstorable_experiment_names_are_rejected(tmp_path: Path, name, error: str) -> None:
    with pytest.raises(InvalidNameError, match=_escape(error)):
        lakestore.start_run(experiment=name, store=str(tmp_path))
    assert lakestore.active_run() is None


def test_param_conflict_is_an_error_and_same_value_is_fine(tmp_path: Path) -> None:
    with lakestore.start_run(store=str(tmp_path)) as run:
        run.log_param("lr", 0.01)
        run.log_param("lr", 0.01)
        with pytest.raises(ParamConflictError, match=r"param 'lr' was logged as '0.01'.*'0.02'"):
            run.log_params({"batch": 32, "lr": 0.02})
        run.log_param("batch", 64)  # the failed batch logged nothing
    rows = read_duckdb(str(tmp_path), "params")
    assert sorted((row[2], row[3]) for row in rows) == [("batch", "64"), ("lr", "0.01")]


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        (0.01, "0.01", 0.01),
        (3, "3", 3.0),
        (np.int64(7), "7", 7.0),
        (np.float64(0.5), "0.5", 0.5),
        (True, "True", None),
        (None, "None", None),
        ("1e-3", "1e-3", 0.001),
        ("adam", "adam", None),
        ("nan", "nan", None),
        ([1, 2], "[1, 2]", None),
        (2**70, str(2**70), float(2**70)),
    ],
)
def test_params_keep_their_text_and_compare_numerically(value, text: str, number) -> None:
    assert spec.param_text_and_float("p", value) == (text, number)


def test_numeric_params_compare_numerically_in_sql(tmp_path: Path) -> None:
    uri = str(tmp_path)
    for lr in (0.1, 0.01, 0.0001, "0.5"):
        with lakestore.start_run(store=uri) as run:
            run.log_param("lr", lr)
    with lakestore.connect(uri) as store:
        found = store.sql(
            "SELECT value FROM params WHERE key = 'lr' AND value_float > 0.001 ORDER BY value_float"
        ).fetchall()
    assert found == [("0.01",), ("0.1",), ("0.5",)]


def test_run_status_follows_how_the_block_exits(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as finished:
        pass
    with pytest.raises(ValueError, match="boom"), lakestore.start_run(store=uri) as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), lakestore.start_run(store=uri) as killed:
        raise KeyboardInterrupt
    runs = _runs(uri)
    assert runs[finished.run_id]["status"] == "FINISHED"
    assert runs[failed.run_id]["status"] == "FAILED"
    assert runs[killed.run_id]["status"] == "KILLED"
    assert all(run["end_time"] >= run["start_time"] for run in runs.values())


def test_module_level_functions_act_on_the_active_run(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with pytest.raises(NoActiveRunError, match="start_run"):
        lakestore.log_metric("loss", 1.0)
    lakestore.set_store(uri)
    lakestore.set_experiment("exp")
    run = lakestore.start_run(run_name="module")
    assert lakestore.active_run() is run
    lakestore.log_param("lr", 0.1)
    lakestore.log_params({"bs": 8})
    lakestore.log_metric("loss", 1.0, step=1)
    lakestore.log_metrics({"acc": 0.5}, step=1)
    lakestore.log_metric_series("curve", [1.0, 2.0])
    lakestore.set_tag("a", "b")
    lakestore.set_tags({"c": "d"})
    lakestore.end_run()
    assert lakestore.active_run() is None
    assert run.status == "FINISHED"
    with pytest.raises(RunEndedError, match="start_run"):
        run.log_metric("loss", 2.0)
    assert sorted(_metrics(uri)) == [
        ("acc", 0.5, 1),
        ("curve", 1.0, 0),
        ("curve", 2.0, 1),
        ("loss", 1.0, 1),
    ]
    assert _runs(uri)[run.run_id]["experiment"] == "exp"


def test_reset_starts_over_as_a_new_process_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAKESTORE_URI", raising=False)
    monkeypatch.delenv("LAKESTORE_EXPERIMENT", raising=False)
    uri = str(tmp_path / "chosen")
    lakestore.set_store(uri)
    lakestore.set_experiment("exp")
    active = lakestore.start_run()
    other = lakestore.start_run(nested=True)
    other.log_metric("loss", 1.0)
    lakestore.reset()
    assert (active.status, other.status) == ("KILLED", "KILLED")
    assert lakestore.active_run() is None
    assert lakestore.last_active_run() is None
    assert lakestore.get_store_uri() == "lakestore-data"
    with lakestore.start_run() as fresh:
        assert fresh.experiment == "default"
    assert {run: row["status"] for run, row in _runs(uri).items()} == {
        active.run_id: "KILLED",
        other.run_id: "KILLED",
    }
    assert _metrics(uri) == [("loss", 1.0, 0)]


def test_the_exit_hooks_come_with_the_first_run_not_with_the_import(tmp_path: Path) -> None:
    script = (
        "import sys, lakestore\n"
        "print(sys.excepthook is sys.__excepthook__)\n"
        f"lakestore.start_run(store={str(tmp_path)!r}).end()\n"
        "print(sys.excepthook is sys.__excepthook__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["True", "False"]


def test_nested_runs_record_their_parent(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, experiment="sweep") as parent:
        with pytest.raises(RunAlreadyActiveError, match="nested=True"):
            lakestore.start_run(store=uri)
        with lakestore.start_run(store=uri, nested=True) as child:
            assert lakestore.active_run() is child
        assert lakestore.active_run() is parent
    runs = _runs(uri)
    assert runs[child.run_id]["parent_run_id"] == parent.run_id
    assert runs[child.run_id]["experiment"] == "sweep"
    assert runs[parent.run_id]["parent_run_id"] is None


def test_a_run_resumed_by_id_keeps_its_history(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, experiment="e", run_name="first") as run:
        run.log_param("lr", 0.1)
        run.log_metric("loss", 1.0, step=0)
    with lakestore.start_run(run.run_id, store=uri) as resumed:
        assert (resumed.experiment, resumed.run_name) == ("e", "first")
        resumed.log_param("lr", 0.1)
        with pytest.raises(ParamConflictError):
            resumed.log_param("lr", 0.2)
        resumed.log_metric("loss", 0.5, step=1)
        assert _runs(uri)[run.run_id]["status"] == "RUNNING"
    assert sorted(_metrics(uri)) == [("loss", 0.5, 1), ("loss", 1.0, 0)]
    state = _runs(uri)[run.run_id]
    assert (state["status"], state["run_name"]) == ("FINISHED", "first")
    with pytest.raises(RunNotFoundError, match="no run 'missing'"):
        lakestore.start_run("missing", store=uri)
    with pytest.raises(InvalidNameError, match=r"run id '\.\./x'"):
        lakestore.start_run("../x", store=uri)


@pytest.mark.parametrize(
    "values",
    [
        [0.5, 0.25, math.nan],
        np.array([0.5, 0.25, math.nan]),
        np.array([0.5, 0.25, math.nan], dtype=np.float32),
        pa.array([0.5, 0.25, math.nan]),
        pl.Series([0.5, 0.25, math.nan]),
    ],
    ids=["list", "numpy", "numpy-float32", "arrow", "polars"],
)
def test_metric_series_from_any_array(tmp_path: Path, values) -> None:
    uri = str(tmp_path)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with lakestore.start_run(store=uri) as run:
        run.log_metric_series("a", values)
        run.log_metric_series("b", values, steps=[10, 20, 30], timestamps=[start] * 3)
        run.log_metric_series("c", values, steps=np.array([1, 2, 3]), timestamps=[0, 1000, 2000])
    rows = read_duckdb(uri, "metrics")
    got = sorted((row[2], row[4], row[3], row[5]) for row in rows)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert [(key, step, value) for key, step, value, _ in got] == [
        ("a", 0, 0.5), ("a", 1, 0.25), ("a", 2, "NaN"),
        ("b", 10, 0.5), ("b", 20, 0.25), ("b", 30, "NaN"),
        ("c", 1, 0.5), ("c", 2, 0.25), ("c", 3, "NaN"),
    ]  # fmt: skip
    assert [t for key, _, _, t in got if key == "b"] == [start] * 3
    assert [t for key, _, _, t in got if key == "c"] == [
        epoch + dt.timedelta(seconds=s) for s in (0, 1, 2)
    ]


def test_explicit_timestamps_are_milliseconds_or_datetimes(tmp_path: Path) -> None:
    uri = str(tmp_path)
    when = dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    with lakestore.start_run(store=uri) as run:
        run.log_metric("a", 1.0, timestamp=when)
        run.log_metric("b", 1.0, timestamp=1_700_000_000_123)
        with pytest.raises(InvalidValueError, match="timestamp 'now'"):
            run.log_metric("c", 1.0, timestamp="now")
    times = {row[2]: row[5] for row in read_duckdb(uri, "metrics")}
    assert times["a"] == when
    assert times["b"] == dt.datetime.fromtimestamp(1_700_000_000.123, dt.UTC)


@pytest.mark.parametrize("rows", [4, batches.DIVIDE_IN_PYTHON + 1], ids=["small", "large"])
def test_timestamps_are_whole_microseconds_in_flushes_of_any_size(
    tmp_path: Path, rows: int
) -> None:
    # A small flush converts times in Python, a large one with pyarrow.compute: same result.
    uri = str(tmp_path)
    milliseconds = [1_700_000_000_123.4567, -1.5, 0.0015, -0.0015]
    with lakestore.start_run(store=uri) as run:
        for step in range(rows):
            run.log_metric("t", 1.0, step=step, timestamp=milliseconds[step % 4])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    got = {
        row[4]: (row[5] - epoch) // dt.timedelta(microseconds=1)
        for row in read_duckdb(uri, "metrics")
        if row[4] < 4
    }
    assert got == {0: 1_700_000_000_123_456, 1: -1500, 2: 1, 3: -1}


def test_data_is_visible_within_the_flush_interval(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, flush_interval=0.2) as run:
        run.log_metric("loss", 1.0)
        deadline = time.monotonic() + 5
        while not _has_metrics(uri) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _metrics(uri) == [("loss", 1.0, 0)]
        assert _runs(uri)[run.run_id]["status"] == "RUNNING"


def _has_metrics(uri: str) -> bool:
    return any(Path(uri, "experiments").glob("*/inbox/metrics/*.parquet"))


def test_flush_rows_starts_a_flush_before_the_interval(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, flush_interval=3600, flush_rows=1000) as run:
        for step in range(2500):
            run.log_metric("loss", 1.0, step=step)
        deadline = time.monotonic() + 5
        while not _has_metrics(uri):
            assert time.monotonic() < deadline, "no flush after flush_rows rows"
            time.sleep(0.02)
        assert len(_metrics(uri)) >= 1000
    assert len(_metrics(uri)) == 2500


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / spec.MARKER_FILE).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(FormatVersionError, match=r"format version 99.*pip install -U lakestore"):
        lakestore.start_run(store=str(tmp_path))
    with pytest.raises(FormatVersionError):
        lakestore.connect(str(tmp_path))


def test_the_store_records_its_format_version(store_uri: str) -> None:
    with lakestore.start_run(store=store_uri):
        pass
    with lakestore.connect(store_uri) as store:
        marker = store.storage.get(spec.MARKER_FILE)
    assert json.loads(marker) == {"format_version": spec.FORMAT_VERSION}


@pytest.mark.parametrize(
    ("options", "environment", "message"),
    [
        ({"flush_interval": 0}, {}, "flush_interval must be a finite number of seconds > 0, got 0"),
        ({"flush_interval": math.inf}, {}, "got inf"),
        ({"flush_rows": 0}, {}, "flush_rows must be >= 1, got 0"),
        (
            {},
            {"LAKESTORE_FLUSH_INTERVAL": "5s"},
            "$LAKESTORE_FLUSH_INTERVAL is '5s', which is not a number",
        ),
        (
            {},
            {"LAKESTORE_FLUSH_ROWS": "many"},
            "$LAKESTORE_FLUSH_ROWS is 'many', which is not a number",
        ),
    ],
)
def test_bad_flush_options_are_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options, environment, message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidValueError, match=_escape(message)):
        lakestore.start_run(store=str(tmp_path), **options)
    assert lakestore.active_run() is None


def test_storage_options_reach_s3_without_environment_variables(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import S3_CREDENTIALS, make_bucket

    bucket = make_bucket(s3_endpoint)
    for name in [*S3_CREDENTIALS, "AWS_ENDPOINT_URL"]:
        monkeypatch.delenv(name, raising=False)
    options = {
        "key": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "endpoint_url": s3_endpoint,
    }
    lakestore.set_store(f"s3://{bucket}/explicit", storage_options=options)
    with lakestore.start_run(experiment="opts") as run:
        run.log_metric("loss", 0.5, step=3)
    with lakestore.connect() as store:
        assert store.sql("SELECT experiment, key, value, step FROM metrics").fetchall() == [
            ("opts", "loss", 0.5, 3)
        ]


class _InterruptedWhenRead:
    """A value or step whose conversion raises KeyboardInterrupt, as Ctrl-C at that moment."""

    def __float__(self) -> float:
        raise KeyboardInterrupt

    def __index__(self) -> int:
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    "interrupted",
    [
        lambda run: run.log_metric("loss", _InterruptedWhenRead(), step=1),
        lambda run: run.log_metric("loss", 9.0, step=_InterruptedWhenRead()),
        lambda run: run.log_metrics({"loss": 9.0, "acc": _InterruptedWhenRead()}, step=1),
        lambda run: run.log_metrics({"loss": 9.0, "acc": 9.0}, step=_InterruptedWhenRead()),
    ],
)
def test_ctrl_c_in_the_middle_of_a_logging_call_leaves_no_half_row(
    tmp_path: Path, interrupted
) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metric("loss", 1.0, step=0)
        with pytest.raises(KeyboardInterrupt):
            interrupted(run)
        run.log_metric("loss", 3.0, step=1)
    assert sorted(_metrics(uri)) == [("loss", 1.0, 0), ("loss", 3.0, 1)]


def test_backpressure_accounting_returns_to_zero_after_each_flush(tmp_path: Path) -> None:
    with lakestore.start_run(store=str(tmp_path), flush_interval=3600, flush_rows=100) as run:
        for round_ in range(3):
            for step in range(250):
                run.log_metric("loss", 1.0, step=step)
            run.log_metric_series("series", [1.0] * 50)
            run.flush()
            assert run._writer._sink.pending_rows == 0, f"round {round_}"


def test_a_deleted_tag_disappears_and_a_reset_tag_shows_its_latest_value(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, tags={"stage": "draft", "team": "a"}) as run:
        run.delete_tag("stage")
        run.set_tag("team", "b")
        run.set_tag("team", "c")
        with lakestore.connect(uri) as store:  # the same flush holds both rows of each key
            run.flush()
            assert store.sql("SELECT key, value FROM tags").fetchall() == [("team", "c")]


def test_views_see_tables_that_were_empty_when_connected(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        store = lakestore.connect(uri)
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(0,)]
        run.log_metric("loss", 1.0)
        run.log_param("lr", 0.1)
        run.flush()
        assert store.sql("SELECT count(*) FROM metrics").fetchall() == [(1,)]
        assert store.sql("SELECT key FROM params").fetchall() == [("lr",)]
        store.close()


def test_a_rejected_start_leaves_no_run_behind(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with pytest.raises(InvalidNameError, match="tag key must not be empty"):
        lakestore.start_run(store=uri, tags={"": "x"})
    assert lakestore.active_run() is None
    assert not list(tmp_path.glob("experiments/*/inbox/*/*.parquet"))


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        (np.float32(0.25), "0.25", 0.25),
        (np.bool_(True), "True", None),
        (np.array(0.5), "0.5", 0.5),
        (np.array([1, 2]), "[1 2]", None),
        (decimal.Decimal("0.1"), "0.1", 0.1),
        (10**400, str(10**400), None),
        (math.inf, "inf", math.inf),
    ],
)
def test_odd_param_values_keep_their_text(value, text: str, number) -> None:
    assert spec.param_text_and_float("p", value) == (text, number)


def test_params_logged_from_many_threads_keep_one_value_per_key(tmp_path: Path) -> None:
    import threading

    uri = str(tmp_path)
    conflicts = []
    with lakestore.start_run(store=uri) as run:

        def log(worker: int) -> None:
            for index in range(500):
                try:
                    run.log_param(f"p{index}", worker)
                except ParamConflictError:
                    conflicts.append(index)

        threads = [threading.Thread(target=log, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = read_duckdb(uri, "params")
    assert len(rows) == 500
    assert sorted(row[2] for row in rows) == sorted(f"p{index}" for index in range(500))
    assert len(conflicts) == 3 * 500


def test_a_run_ended_from_another_thread_is_no_longer_active(tmp_path: Path) -> None:
    import threading

    run = lakestore.start_run(store=str(tmp_path))
    ender = threading.Thread(target=run.end)
    ender.start()
    ender.join()
    assert lakestore.active_run() is None
    with pytest.raises(NoActiveRunError):
        lakestore.log_metric("loss", 1.0)
    with lakestore.start_run(store=str(tmp_path)) as second:
        assert lakestore.active_run() is second


def test_sys_exit_zero_in_a_block_ends_the_run_finished(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with pytest.raises(SystemExit), lakestore.start_run(store=uri) as ok:
        raise SystemExit(0)
    with pytest.raises(SystemExit), lakestore.start_run(store=uri) as failed:
        raise SystemExit(3)
    runs = _runs(uri)
    assert runs[ok.run_id]["status"] == "FINISHED"
    assert runs[failed.run_id]["status"] == "FAILED"


def test_a_resumed_run_keeps_the_earliest_param_value(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_param("lr", 0.1)
    # Another writer of the same run logged a different value later (no coordination).
    with lakestore.start_run(run.run_id, store=uri) as other:
        other._params.clear()
        other.log_param("lr", 0.2)
    with lakestore.start_run(run.run_id, store=uri) as resumed:
        resumed.log_param("lr", 0.1)
        with pytest.raises(ParamConflictError):
            resumed.log_param("lr", 0.2)
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT value FROM params").fetchall() == [("0.1",)]


def test_a_run_stays_running_while_any_of_its_writers_runs(tmp_path: Path) -> None:
    import threading

    uri = str(tmp_path)
    rank0 = lakestore.start_run(store=uri)
    # Rank 1 writes the same run from elsewhere (a thread here: it has no active run).
    rank1 = threading.Thread(target=lambda: lakestore.start_run(rank0.run_id, store=uri).end())
    rank1.start()
    rank1.join()
    assert _runs(uri)[rank0.run_id]["status"] == "RUNNING"
    assert _runs(uri)[rank0.run_id]["end_time"] is None
    rank0.end("FAILED")
    assert _runs(uri)[rank0.run_id]["status"] == "FAILED"


def test_an_end_interrupted_by_ctrl_c_is_completed_by_the_next_end(tmp_path: Path) -> None:
    import signal

    uri = str(tmp_path)
    run = lakestore.start_run(store=uri, flush_interval=3600, flush_rows=10_000_000)
    run.log_metric_series("loss", np.zeros(3_000_000))
    for step in range(1000):
        run.log_metric("acc", 1.0, step=step)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        with pytest.raises(KeyboardInterrupt):
            run.end()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    run.end()
    with lakestore.connect(uri) as store:
        counts = dict(store.sql("SELECT key, count(*) FROM metrics GROUP BY key").fetchall())
    assert counts == {"loss": 3_000_000, "acc": 1000}
    assert _runs(uri)[run.run_id]["status"] == "FINISHED"


def test_a_start_that_cannot_write_leaves_no_run_behind(tmp_path: Path) -> None:
    blocker = tmp_path / "experiments"
    blocker.write_text("a file where the experiments folder should be")
    with pytest.raises(lakestore.LakestoreError, match="could not write"):
        lakestore.start_run(store=str(tmp_path), flush_interval=0.05)
    time.sleep(0.2)  # no background flush is left to write the run later
    blocker.unlink()
    time.sleep(0.2)
    assert not list(tmp_path.glob("experiments/*/inbox/*/*.parquet"))
    assert lakestore.active_run() is None


def test_a_store_folder_named_like_a_partition_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "run=3" / "store"
    with pytest.raises(StoreError, match="has a folder named 'run=3'"):
        lakestore.start_run(store=str(root))
    assert not root.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(5, dtype=np.float64),
        lambda: np.arange(5, dtype=np.float32),
        lambda: np.arange(5, dtype=np.int64),
        lambda: array.array("d", range(5)),
    ],
    ids=["float64", "float32", "int64", "array.array"],
)
def test_an_array_can_be_reused_as_soon_as_it_is_logged(tmp_path: Path, make) -> None:
    # The rows wait in memory until the next flush: they must not be a view of the caller's
    # array, which a training loop overwrites at its next step.
    uri = str(tmp_path)
    values, steps = make(), make()
    with lakestore.start_run(store=uri) as run:
        run.log_metric_series("x", values, steps=steps)
        for index in range(5):
            values[index] = -1
            steps[index] = 100 + index
    rows = sorted((row[4], row[3]) for row in read_duckdb(uri, "metrics"))
    assert rows == [(step, float(step)) for step in range(5)]


def test_logging_never_imports_pandas(tmp_path: Path) -> None:
    # pyarrow imports pandas (about 200 ms) whenever it converts Python objects and pandas
    # is installed, as in most ML environments: a stand-in pandas records any import of it.
    fake, marker = tmp_path / "site" / "pandas", tmp_path / "pandas-imported"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        f"import traceback\nwith open({str(marker)!r}, 'a') as file:\n"
        "    traceback.print_stack(file=file)\nraise ImportError('not the real pandas')\n",
        encoding="utf-8",
    )
    script = f"""
import sys, numpy as np, lakestore
with lakestore.start_run(store={str(tmp_path / "store")!r}) as run:
    run.log_param("lr", 0.1)
    run.set_tag("team", "vision")
    run.log_metric("loss", 0.5)
    run.log_metrics({{"a": 1.0, "b": 2}}, step=3)
    run.log_metric_series("x", np.arange(1000.0))
    run.log_metric_series("y", [1.0, 2.0], steps=np.array([5, 6]))
"""
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), marker.read_text(encoding="utf-8")


def test_a_notebook_shows_a_store_a_search_and_a_comparison_as_html_tables(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path)
    run_ids = []
    for lr in (0.1, 0.2):
        with lakestore.start_run(store=uri, experiment="<b>sweep</b>") as run:
            run.log_param("lr", lr)
            run.log_metric("acc", lr)
        run_ids.append(run.run_id)
    with lakestore.connect(uri) as store:
        shown = store._repr_html_()
        assert "<table" in shown
        assert uri in shown
        assert "&lt;b&gt;sweep&lt;/b&gt;" in shown  # escaped
        assert "<b>" not in shown
        found = store.search_runs(order_by=["metrics.acc DESC"])
        assert "<table" in found._repr_mimebundle_()["text/html"]  # DuckDB's own
        compared = store.compare(run_ids)._repr_html_()
        assert compared.count("<table") == 2
        assert run_ids[0] in compared
