"""The conversion of logged values to the Arrow tables of the files a writer writes, called
directly: no store, no thread."""

from __future__ import annotations

import array
import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakestore import batches, spec
from lakestore.batches import Batch, LoggedValues
from lakestore.errors import InvalidNameError, InvalidValueError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
WRITER = "0123456789abcdef" * 2
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
KEYS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def _micros(column: pa.ChunkedArray) -> list[int]:
    return [(moment - EPOCH) // dt.timedelta(microseconds=1) for moment in column.to_pylist()]


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _log(logged: LoggedValues, rows: list[tuple[str, float, int, int]]) -> None:
    """Append metric rows to the buffer as RunWriter.append_metric does."""
    for key, value, step, time_ns in rows:
        buffer = logged.metrics
        buffer.keys.append(logged.key_code(key))
        buffer.values.append(value)
        buffer.steps.append(step)
        buffer.times.append(time_ns)


def _metric_rows(table: pa.Table) -> list[tuple[str, float, int, int]]:
    return list(
        zip(
            table.column("key").to_pylist(),
            table.column("value").to_pylist(),
            table.column("step").to_pylist(),
            _micros(table.column("timestamp")),
            strict=True,
        )
    )


# -- round trips -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abc"), FLOATS, INT64, INT64), max_size=30),
    st.lists(st.integers(min_value=0, max_value=30), max_size=3),
)
def test_metric_rows_come_back_from_the_tables_as_logged(
    rows: list[tuple[str, float, int, int]], seals: list[int]
) -> None:
    logged = LoggedValues()
    done = 0
    for cut in sorted(min(cut, len(rows)) for cut in seals):  # sealed part by part
        _log(logged, rows[done:cut])
        logged.seal()
        done = max(done, cut)
    _log(logged, rows[done:])
    logged.seal()
    tables = batches.batch_tables(logged.take())
    assert not logged.holds_data
    out = [row for name, table in tables if name == "metrics" for row in _metric_rows(table)]
    assert len(out) == len(rows)
    for (key, value, step, time_ns), got in zip(rows, out, strict=True):
        assert got[0] == key
        assert _same(got[1], value)
        assert got[2:] == (step, time_ns // 1000)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(KEYS, st.none() | TEXT, st.integers(min_value=0, max_value=10**17)),
        min_size=1,
        max_size=10,
    )
)
def test_tag_rows_come_back_from_their_table_as_logged(
    rows: list[tuple[str, str | None, int]],
) -> None:
    table = batches.rows_table("tags", rows)
    assert table.schema == spec.arrow_schema("tags")
    back = zip(
        table.column("key").to_pylist(),
        table.column("value").to_pylist(),
        _micros(table.column("timestamp")),
        strict=True,
    )
    assert list(back) == rows


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(FLOATS, INT64, st.integers(min_value=-(10**12), max_value=10**12)),
        min_size=1,
        max_size=20,
    )
)
def test_a_series_comes_back_from_its_table_as_logged(
    points: list[tuple[float, int, int]],
) -> None:
    values, steps, milliseconds = (list(column) for column in zip(*points, strict=True))
    table = batches.series_table("loss", values, steps, milliseconds, _no_clock)
    assert table is not None
    out = _metric_rows(table)
    assert [row[0] for row in out] == ["loss"] * len(points)
    assert all(_same(row[1], value) for row, value in zip(out, values, strict=True))
    assert [row[2] for row in out] == steps
    assert [row[3] for row in out] == [ms * 1000 for ms in milliseconds]


def _no_clock() -> int:
    raise AssertionError("timestamps were given: the clock is not read")


# -- metric tables -----------------------------------------------------------------------


@pytest.mark.parametrize("divide_in_python", [True, False], ids=["python", "compute"])
def test_times_become_whole_microseconds_either_way(
    monkeypatch: pytest.MonkeyPatch, divide_in_python: bool
) -> None:
    monkeypatch.setattr(batches, "DIVIDE_IN_PYTHON", 10**9 if divide_in_python else 0)
    logged = LoggedValues()
    # Times before 1970 come in whole microseconds (from milliseconds or datetimes).
    times = [1_700_000_000_123_456_789, -1_500_000, 1_999, -1000]
    _log(logged, [("t", 1.0, step, time_ns) for step, time_ns in enumerate(times)])
    logged.seal()
    [(_, table)] = batches.batch_tables(logged.take())
    assert _micros(table.column("timestamp")) == [1_700_000_000_123_456, -1500, 1, -1]


@pytest.mark.parametrize(("small_dictionary", "expected"), [(256, 3), (1, 2)])
def test_a_file_keeps_only_the_keys_it_uses_once_a_run_has_many(
    monkeypatch: pytest.MonkeyPatch, small_dictionary: int, expected: int
) -> None:
    monkeypatch.setattr(batches, "SMALL_DICTIONARY", small_dictionary)
    logged = LoggedValues()
    _log(logged, [("a", 1.0, 0, 0), ("b", 2.0, 0, 0), ("c", 3.0, 0, 0)])
    logged.seal()
    logged.take()
    _log(logged, [("c", 4.0, 1, 0), ("a", 5.0, 1, 0)])
    logged.seal()
    [(_, table)] = batches.batch_tables(logged.take())
    keys = table.column("key").combine_chunks()
    assert len(keys.dictionary) == expected
    assert keys.to_pylist() == ["c", "a"]


@pytest.mark.parametrize(("max_file_rows", "files"), [(10, [5]), (2, [2, 2, 1]), (5, [5])])
def test_files_are_written_params_tags_metrics_then_run_events(
    monkeypatch: pytest.MonkeyPatch, max_file_rows: int, files: list[int]
) -> None:
    monkeypatch.setattr(batches, "MAX_FILE_ROWS", max_file_rows)
    logged = LoggedValues()
    logged.rows["runs"].append((1, "RUNNING", "r", None, "u", "h", 1, None, WRITER))
    logged.rows["tags"].append(("t", "v", 1))
    logged.rows["params"].append(("p", "1", 1.0, 1))
    _log(logged, [("m", 1.0, step, 0) for step in range(3)])
    logged.seal()
    logged.sealed.append(_series("s", 2))
    tables = batches.batch_tables(logged.take())
    names = [name for name, _ in tables]
    assert names == ["params", "tags", *["metrics"] * len(files), "runs"]
    assert [table.num_rows for name, table in tables if name == "metrics"] == files
    keys = [key for name, table in tables if name == "metrics" for key in table["key"].to_pylist()]
    assert keys == ["m", "m", "m", "s", "s"]


def test_an_empty_batch_makes_no_table() -> None:
    assert batches.batch_tables(LoggedValues().take()) == []


def _series(key: str, count: int) -> pa.Table:
    table = batches.series_table(key, [1.0] * count, None, None, lambda: 0)
    assert table is not None
    return table


# -- logged values -----------------------------------------------------------------------


def test_a_batch_given_back_goes_before_what_was_logged_since() -> None:
    logged = LoggedValues()
    logged.rows["tags"].append(("a", "1", 1))
    _log(logged, [("m", 1.0, 0, 0)])
    assert logged.seal() == 1
    assert logged.seal() == 0  # nothing more to seal
    batch = logged.take()
    assert isinstance(batch, Batch)
    assert batch.key_names == ["m"]
    logged.rows["tags"].append(("b", "2", 2))
    _log(logged, [("n", 2.0, 1, 0)])
    logged.seal()
    logged.give_back(batch)
    again = logged.take()
    assert again.rows["tags"] == [("a", "1", 1), ("b", "2", 2)]
    assert [list(buffer.values) for buffer in again.metrics] == [[1.0], [2.0]]


def test_clearing_keeps_the_key_codes() -> None:
    logged = LoggedValues()
    _log(logged, [("a", 1.0, 0, 0), ("b", 1.0, 0, 0)])
    assert logged.holds_data
    logged.clear()
    assert not logged.holds_data
    assert logged.key_code("b") == 1
    assert logged.key_code("c") == 2


@pytest.mark.parametrize(
    ("row", "appended", "error", "message"),
    [
        (1, 1, TypeError(), "value 'x' is not a number"),  # the value of row 1 failed
        (1, 2, OverflowError(), "step 2 is not an integer"),  # its value went in: the step
        (0, 0, ValueError(), "value 'x' is not a number"),
    ],
)
def test_a_failed_append_is_undone_and_named(
    row: int, appended: int, error: Exception, message: str
) -> None:
    buffer = batches.MetricBuffer()
    for column in (buffer.keys, buffer.values, buffer.steps, buffer.times):
        column.extend([0] * row)
    buffer.values.extend([0.0] * (appended - row))
    raised = buffer.undo(0, row, error, "m", "x", 2)
    assert isinstance(raised, InvalidValueError)
    assert message in str(raised)
    assert len(buffer.values) == len(buffer.keys) == 0


def test_an_interrupted_append_is_undone_and_reraised() -> None:
    buffer = batches.MetricBuffer()
    buffer.values.append(1.0)
    interrupt = KeyboardInterrupt()
    assert buffer.undo(0, 0, interrupt, "m", 1.0, 0) is interrupt
    assert len(buffer.values) == 0


@pytest.mark.parametrize(
    ("value", "refused"),
    [(1.5, False), (3, False), (1 + 0j, True), (complex(1, 2), True), (np.float32(2.0), False)],
)
def test_values_a_float_would_misrepresent_are_refused(value: object, refused: bool) -> None:
    assert batches.not_a_float(value) is refused


def test_a_decimal_beyond_float64_is_refused() -> None:
    from decimal import Decimal

    assert batches.not_a_float(Decimal("1e400"))
    assert not batches.not_a_float(Decimal("1e300"))
    assert not batches.not_a_float(Decimal("nan"))


# -- rows and series handed over whole ----------------------------------------------------


def test_tags_become_rows_at_the_time_given() -> None:
    rows = batches.tag_rows({"a": 1, "b": "x"}, 123)
    assert rows == [("a", "1", 123), ("b", "x", 123)]


@pytest.mark.parametrize(
    ("tags", "error"),
    [({"ok": 1, "lakestore.deleted": "x"}, InvalidNameError), ({"": 1}, InvalidNameError)],
)
def test_bad_tags_make_no_rows(tags: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        batches.tag_rows(tags, 0)


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0, 3.0],
        (1.0, 2.0, 3.0),
        [1, 2, 3],
        array.array("d", [1.0, 2.0, 3.0]),
        array.array("i", [1, 2, 3]),
        np.array([1.0, 2.0, 3.0], dtype=np.float32),
        np.array([1, 2, 3], dtype=np.uint8),
        pa.array([1.0, 2.0, 3.0]),
        pa.chunked_array([[1.0], [2.0, 3.0]]),
    ],
    ids=lambda values: type(values).__name__,
)
def test_a_series_takes_numbers_of_any_kind(values: Any) -> None:
    table = batches.series_table("k", values, None, None, lambda: 7)
    assert table is not None
    assert table.column("value").to_pylist() == [1.0, 2.0, 3.0]
    assert table.column("step").to_pylist() == [0, 1, 2]
    assert _micros(table.column("timestamp")) == [7, 7, 7]


def test_a_series_copies_a_numpy_array() -> None:
    values = np.array([1.0, 2.0])
    table = batches.series_table("k", values, None, None, lambda: 0)
    values[0] = 9.0  # reused by the caller at once
    assert table is not None
    assert table.column("value").to_pylist() == [1.0, 2.0]


def test_an_empty_series_makes_no_table() -> None:
    assert batches.series_table("k", [], None, None, _no_clock) is None


@pytest.mark.parametrize(
    ("values", "steps", "timestamps", "message"),
    [
        (["a"], None, None, "cannot be read as double|must be numbers"),
        ([1.0, None], None, None, "contain nulls"),
        ([1.0, 2.0], [1], None, "2 values but 1 steps"),
        ([1.0], None, [dt.datetime(2024, 1, 1)], "no time zone"),
        ([1.0], None, ["now"], "must be datetimes or milliseconds"),
    ],
)
def test_a_bad_series_is_refused(values: Any, steps: Any, timestamps: Any, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        batches.series_table("k", values, steps, timestamps, lambda: 0)


def test_imported_points_become_a_metric_table() -> None:
    table = batches.points_table([("a", 1.0, 0, 1_000), ("b", None, 1, -2)])
    out = _metric_rows(table)
    assert [row[0] for row in out] == ["a", "b"]
    assert out[0][1] == 1.0
    assert math.isnan(out[1][1])
    assert [row[2:] for row in out] == [(0, 1_000_000), (1, -2000)]


def test_an_imported_point_with_a_bad_key_is_refused() -> None:
    with pytest.raises(InvalidNameError):
        batches.points_table([("", 1.0, 0, 0)])


# -- files -----------------------------------------------------------------------------


@pytest.mark.parametrize("table_name", ["runs", "params", "tags", "metrics"])
def test_a_file_table_names_its_run_writer_and_sequence_on_every_row(table_name: str) -> None:
    rows: dict[str, list[tuple[Any, ...]]] = {
        "runs": [(1, "RUNNING", "r", None, "u", "h", 1, None, WRITER)] * 2,
        "params": [("p", "1", 1.0, 1), ("q", "x", None, 2)],
        "tags": [("t", "v", 1), ("t", None, 2)],
    }
    table = (
        _series("m", 2)
        if table_name == "metrics"
        else batches.rows_table(table_name, rows[table_name])
    )
    stored = batches.file_table(table_name, table, "exp", "run1", WRITER, 41)
    schema = spec.file_schema(table_name)
    assert stored.schema.names == schema.names
    assert stored.cast(schema).num_rows == 2
    assert stored.column("experiment").to_pylist() == ["exp", "exp"]
    assert stored.column("run").to_pylist() == ["run1", "run1"]
    assert stored.column(spec.WRITER_COLUMN).to_pylist() == [WRITER, WRITER]
    assert stored.column(spec.SEQUENCE_COLUMN).to_pylist() == [41, 41]
    own = [name for name in spec.arrow_schema(table_name).names if name != spec.WRITER_COLUMN]
    assert stored.select(own).cast(table.select(own).schema).equals(table.select(own))
