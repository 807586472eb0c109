"""Logged values as the Arrow tables of the files a writer writes.

Everything that turns Python values (metric rows, series, params, tags, run events,
imported points) into the stored columns lives here, so that the format has one
definition of each conversion. Nothing here starts a thread, touches a store or reads a
clock: callers pass in times, and hold the lock that guards a :class:`LoggedValues`.

Metric rows are kept as typed buffers (``array.array``), which become Arrow arrays without
a per-row conversion.
"""

from __future__ import annotations

import array
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from lakestore import spec
from lakestore.errors import InvalidNameError, InvalidValueError
from lakestore.spec import arrow_column

if TYPE_CHECKING:
    import pyarrow as pa

MAX_FILE_ROWS = 4 * 1024 * 1024
"""Metric rows per file at most: a larger flush is split into files written in parallel."""

SMALL_DICTIONARY = 256
"""Metric keys a run may have logged before each file's dictionary is cut to the keys it
holds (below this, the full dictionary costs less than finding the used keys)."""

DIVIDE_IN_PYTHON = 65_536
"""Metric rows whose times a flush converts in Python rather than with pyarrow.compute."""

_ROW_TABLES = ("runs", "params", "tags")
"""The tables whose rows are logged as tuples in schema order."""


# -- metric rows as typed buffers -------------------------------------------------------


class MetricBuffer:
    """Metric rows as parallel typed arrays: key codes, values, steps, times (ns)."""

    __slots__ = ("keys", "steps", "times", "values")

    def __init__(self) -> None:
        self.keys = array.array("i")
        self.values = array.array("d")
        self.steps = array.array("q")
        self.times = array.array("q")

    def take_rows(self) -> MetricBuffer:
        """A buffer holding this one's rows, leaving this one empty (the same object, so
        that a writer may keep a reference to the buffer it appends to)."""
        taken = MetricBuffer()
        taken.keys, self.keys = self.keys, taken.keys
        taken.values, self.values = self.values, taken.values
        taken.steps, self.steps = self.steps, taken.steps
        taken.times, self.times = self.times, taken.times
        return taken

    def truncate(self, length: int) -> None:
        """Drop rows past ``length``: undoes a batch that failed half-way."""
        for column in (self.keys, self.values, self.steps, self.times):
            del column[length:]

    def undo(
        self, length: int, row: int, error: BaseException, key: str, value: object, step: object
    ) -> BaseException:
        """Drop what a failed call appended past ``length``; the exception to raise for it.

        ``row`` is where the failing row started: if its value was not appended, the value
        was bad, else the step.
        """
        value_failed = len(self.values) == row
        self.truncate(length)
        if isinstance(error, (TypeError, ValueError, OverflowError)):
            return bad_metric(key, value) if value_failed else bad_step(key, step)
        return error


def not_a_float(value: object) -> bool:
    """True for a value of an unusual type that a float would misrepresent: a complex
    number that is not real (NumPy's would append its real part), or a finite Decimal
    beyond float64's range (it would become an infinity, where 10**400 is refused)."""
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        return True
    if type(value).__name__ == "Decimal":
        return bool(value.is_finite() and math.isinf(float(value)))  # type: ignore[attr-defined,arg-type]
    return False


def bad_metric(key: str, value: object) -> InvalidValueError:
    """The error for a metric value that is not a float64."""
    return InvalidValueError(
        f"metric {key!r}: value {value!r} is not a number a float64 holds; log an int or "
        "float (NaN and infinities are fine)"
    )


def bad_step(key: str, step: object) -> InvalidValueError:
    """The error for a step that is not an int64."""
    return InvalidValueError(f"metric {key!r}: step {step!r} is not an integer in the int64 range")


class Batch(NamedTuple):
    """What one flush takes of a writer's logged values."""

    metrics: list[MetricBuffer | pa.Table]
    rows: dict[str, list[tuple[Any, ...]]]
    key_names: list[str]


class LoggedValues:
    """One writer's logged values that no flush has taken yet.

    ``metrics`` is the buffer logging appends to, the same object for life; sealed buffers
    and ready metric tables wait in ``sealed``; rows of the other tables in ``rows``. Metric
    keys are coded in the order they were first logged.
    """

    __slots__ = ("key_codes", "key_names", "metrics", "rows", "sealed")

    def __init__(self) -> None:
        self.key_codes: dict[str, int] = {}
        self.key_names: list[str] = []
        self.metrics = MetricBuffer()
        self.sealed: list[MetricBuffer | pa.Table] = []
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _ROW_TABLES}

    def key_code(self, key: str) -> int:
        """The code of metric ``key``, given it if it has none yet."""
        code = self.key_codes.get(key)
        if code is None:
            code = self.key_codes[key] = len(self.key_names)
            self.key_names.append(key)
        return code

    def seal(self) -> int:
        """Put the metric buffer with the sealed ones and start a new one; the rows sealed."""
        rows = len(self.metrics.values)
        if rows:
            self.sealed.append(self.metrics.take_rows())
        return rows

    def take(self) -> Batch:
        """Everything logged, for a flush (seal() first to include the metric buffer)."""
        batch = Batch(self.sealed, self.rows, list(self.key_names))
        self.sealed = []
        self.rows = {table: [] for table in _ROW_TABLES}
        return batch

    def give_back(self, batch: Batch) -> None:
        """Put a batch that could not be written back in front of what was logged since."""
        self.sealed[:0] = batch.metrics
        for table, taken in batch.rows.items():
            self.rows[table][:0] = taken

    def clear(self) -> None:
        """Drop every logged value (the key codes stay)."""
        self.metrics.take_rows()
        self.sealed = []
        self.rows = {table: [] for table in _ROW_TABLES}

    @property
    def holds_data(self) -> bool:
        """True while some logged value is here."""
        return bool(self.sealed or self.metrics.values or any(self.rows.values()))


# -- tables ------------------------------------------------------------------------------


def batch_tables(batch: Batch) -> list[tuple[str, pa.Table]]:
    """The tables of ``batch`` in the order their files are written, each with its table's
    name: params, tags, metrics (split at MAX_FILE_ROWS), then run events, so that a reader
    who sees a run's end sees its data too."""
    import pyarrow as pa

    files = []
    for table_name in ("params", "tags"):
        if batch.rows[table_name]:
            files.append((table_name, rows_table(table_name, batch.rows[table_name])))
    if batch.metrics:
        tables = [
            item if isinstance(item, pa.Table) else _buffer_table(item, batch.key_names)
            for item in batch.metrics
        ]
        metrics = pa.concat_tables(tables)
        for start in range(0, metrics.num_rows, MAX_FILE_ROWS):
            files.append(("metrics", metrics.slice(start, MAX_FILE_ROWS)))
    if batch.rows["runs"]:
        files.append(("runs", rows_table("runs", batch.rows["runs"])))
    return files


def rows_table(table_name: str, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """Rows of the runs, params or tags table (each in schema order) as a table."""
    import pyarrow as pa

    schema = spec.arrow_schema(table_name)
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [arrow_column(column, field.type) for column, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _metric_table(keys: pa.Array, values: pa.Array, steps: pa.Array, times: pa.Array) -> pa.Table:
    """A metrics table in the stored schema, with keys dictionary-encoded."""
    import pyarrow as pa

    stored = spec.arrow_schema("metrics")
    schema = stored.set(0, stored.field("key").with_type(pa.dictionary(pa.int32(), pa.string())))
    return pa.Table.from_arrays([keys, values, steps, times], schema=schema)


def file_table(
    table_name: str, table: pa.Table, experiment: str, run_id: str, writer_id: str, sequence: int
) -> pa.Table:
    """``table`` (in its table's own schema) as the columns of an inbox file: the
    experiment, the run, the writer and the file's sequence number on every row."""
    import pyarrow as pa

    rows = table.num_rows
    zeros = _typed(pa.int32(), array.array("i", [0]) * rows)

    def constant(text: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(zeros, arrow_column([text], pa.string()))

    schema = spec.file_schema(table_name)
    own = schema.names[2:-2]
    columns = [
        constant(experiment),
        constant(run_id),
        *(table.column(name) for name in own),
        constant(writer_id),
        _typed(pa.int64(), array.array("q", [sequence]) * rows),
    ]
    fields = [field.with_type(column.type) for field, column in zip(schema, columns, strict=True)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _typed(arrow_type: pa.DataType, buffer: array.array[Any]) -> pa.Array:
    import pyarrow as pa

    return pa.Array.from_buffers(arrow_type, len(buffer), [None, pa.py_buffer(buffer)])


def _buffer_table(buffer: MetricBuffer, key_names: list[str]) -> pa.Table:
    import pyarrow as pa

    codes = _typed(pa.int32(), buffer.keys)
    dictionary = arrow_column(key_names, pa.string())
    if len(key_names) > SMALL_DICTIONARY:
        import pyarrow.compute as pc

        # Parquet stores the whole dictionary in each file: keep only the keys this file uses.
        used = pc.unique(codes)
        if len(used) < len(key_names):
            codes = pc.index_in(codes, value_set=used)
            dictionary = dictionary.take(used)
    keys = pa.DictionaryArray.from_arrays(codes, dictionary)
    values = _typed(pa.float64(), buffer.values)
    return _metric_table(keys, values, _typed(pa.int64(), buffer.steps), _micros(buffer.times))


def _micros(times_ns: array.array[int]) -> pa.Array:
    """Nanoseconds since the epoch as the stored microsecond timestamps."""
    import pyarrow as pa

    arrow_type = spec.arrow_schema("metrics").field("timestamp").type
    if len(times_ns) <= DIVIDE_IN_PYTHON:
        # Importing pyarrow.compute takes about 60 ms: more than dividing this many in Python.
        micros = array.array("q", [time_ns // 1000 for time_ns in times_ns])
        return _typed(arrow_type, micros)
    import pyarrow.compute as pc

    # A scalar taken from an array, not made from a Python int: that would import pandas.
    thousand = _typed(pa.int64(), array.array("q", [1000]))[0]
    return pc.divide(_typed(pa.int64(), times_ns), thousand).cast(arrow_type)


# -- rows and series handed over whole ----------------------------------------------------


def tag_rows(tags: dict[str, Any], now_us: int) -> list[tuple[str, str, int]]:
    """Rows of the tags table set at ``now_us``; raises before returning any if one tag is
    bad."""
    for key in tags:
        if isinstance(key, str) and key.startswith(spec.RESERVED_TAG_PREFIX):
            raise InvalidNameError(
                f"tag key {key!r} is reserved: keys starting with "
                f"{spec.RESERVED_TAG_PREFIX!r} are lakestore's own (delete a run with "
                "lakestore.delete_run, rename it with lakestore.rename_run)"
            )
    return [
        (spec.check_key(key, "tag"), spec.check_text(str(value), f"tag {key!r} value"), now_us)
        for key, value in tags.items()
    ]


def series_table(
    key: str, values: Any, steps: Any, timestamps: Any, now_us: Callable[[], int]
) -> pa.Table | None:
    """A whole series of metric ``key`` as a metrics table, or None if it has no values.

    ``values`` is anything Arrow converts to float64; ``steps`` (int64) default to 0, 1,
    2, ...; ``timestamps`` (aware datetimes, or milliseconds since the epoch) default to
    ``now_us()`` for every point.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    spec.check_key(key, "metric")
    value_array = _to_arrow(values, pa.float64(), f"metric {key!r} values")
    count = len(value_array)
    if count == 0:
        return None
    if value_array.null_count:
        raise InvalidValueError(f"metric {key!r} values contain nulls; use NaN instead")
    if steps is None:
        # A start taken from an array, not made from a Python int: that imports pandas.
        start = _repeated(pa.int64(), -1, 1)[0]
        step_array = pc.cumulative_sum(_repeated(pa.int64(), 1, count), start=start)
    else:
        step_array = _to_arrow(steps, pa.int64(), f"metric {key!r} steps")
    timestamp_type = spec.arrow_schema("metrics").field("timestamp").type
    if timestamps is None:
        time_array = _repeated(timestamp_type, now_us(), count)
    else:
        time_array = _to_timestamps(timestamps, timestamp_type, key)
    for name, other in (("steps", step_array), ("timestamps", time_array)):
        if len(other) != count:
            raise InvalidValueError(f"metric {key!r}: {count} values but {len(other)} {name}")
        if other.null_count:
            raise InvalidValueError(f"metric {key!r}: {name} contain nulls")
    keys = pa.DictionaryArray.from_arrays(
        _repeated(pa.int32(), 0, count), arrow_column([key], pa.string())
    )
    return _metric_table(keys, value_array, step_array, time_array)


def points_table(points: Sequence[tuple[str, float | None, int, int]]) -> pa.Table:
    """Metric points (key, value, step, milliseconds since the epoch) as a metrics table;
    a missing value becomes NaN. Raises InvalidNameError for a bad key."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys, values, steps, times = zip(*points, strict=True)
    names = pa.array(keys, pa.string()).dictionary_encode()
    for key in names.dictionary.to_pylist():
        spec.check_key(key, "metric")
    timestamp_type = spec.arrow_schema("metrics").field("timestamp").type
    numbers = pa.array(values, pa.float64())
    if numbers.null_count:
        numbers = pc.fill_null(numbers, math.nan)
    return _metric_table(
        names.cast(pa.dictionary(pa.int32(), pa.string())),
        numbers,
        pa.array(steps, pa.int64()),
        pc.multiply(pa.array(times, pa.int64()), 1000).cast(timestamp_type),
    )


def _repeated(arrow_type: pa.DataType, value: int, count: int) -> pa.Array:
    """``count`` copies of ``value`` (pa.repeat is several times slower for large counts)."""
    typecode = "i" if arrow_type.bit_width == 32 else "q"
    return _typed(arrow_type, array.array(typecode, [value]) * count)


def _to_arrow(values: Any, arrow_type: pa.DataType, what: str) -> pa.Array:
    """``values`` as an Arrow array of ``arrow_type``; only numbers are accepted.

    A NumPy array (or any buffer of numbers) is copied: the caller may reuse it at once,
    while the rows wait in memory for the next flush.
    """
    import pyarrow as pa

    try:
        converted = _copy_of_buffer(values)
        if converted is None:
            converted = _plain_list(values, arrow_type)
        if converted is None:
            converted = pa.array(values)
        if isinstance(converted, pa.ChunkedArray):
            converted = converted.combine_chunks()
        if not (
            pa.types.is_integer(converted.type)
            or pa.types.is_floating(converted.type)
            or pa.types.is_decimal(converted.type)
            or pa.types.is_null(converted.type)
        ):
            raise InvalidValueError(f"{what} must be numbers, got {converted.type} values")
        return converted.cast(arrow_type)
    except InvalidValueError:
        raise
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as error:
        raise InvalidValueError(f"{what} cannot be read as {arrow_type}: {error}") from None


def _copy_of_buffer(values: Any) -> pa.Array | None:
    """A copy of ``values`` as Arrow if it is a one-dimensional buffer of numbers (a NumPy
    array, an ``array.array``), else None.

    Built from the bytes, because ``pa.array`` imports pandas whenever it is installed.
    """
    import pyarrow as pa

    plain_numpy = type(values).__module__ == "numpy" and type(values).__name__ == "ndarray"
    if not plain_numpy and type(values) is not array.array:  # a masked array has nulls
        return None
    try:
        view = memoryview(values)
    except (TypeError, ValueError):  # no buffer, or one of a type buffers cannot describe
        return None
    code = view.format
    if code[:1] in "@=" or (code[:1] == "<" and sys.byteorder == "little"):
        code = code[1:]
    kind = _BUFFER_KINDS.get(code)
    if view.ndim != 1 or not view.c_contiguous or kind is None:
        return None
    arrow_type = getattr(pa, f"{kind}{8 * view.itemsize}")()
    return pa.Array.from_buffers(arrow_type, len(view), [None, pa.py_buffer(view.tobytes())])


def _plain_list(values: Any, arrow_type: pa.DataType) -> pa.Array | None:
    """A list of Python floats (or ints, for int64) as Arrow, else None: the common case,
    built without ``pa.array`` for the same reason as :func:`_copy_of_buffer`."""
    import pyarrow as pa

    if type(values) not in (list, tuple):
        return None
    plain, code = (float, "d") if arrow_type == pa.float64() else (int, "q")
    if not all(type(value) is plain for value in values):
        return None
    try:
        typed = array.array(code, values)
    except OverflowError:  # past int64: pa.array says so
        return None
    return pa.Array.from_buffers(arrow_type, len(typed), [None, pa.py_buffer(typed)])


_BUFFER_KINDS = {"e": "float", "f": "float", "d": "float"}
_BUFFER_KINDS |= dict.fromkeys("bhilq", "int") | dict.fromkeys("BHILQ", "uint")


def _to_timestamps(timestamps: Any, timestamp_type: pa.DataType, key: str) -> pa.Array:
    """Aware datetimes or milliseconds since the epoch, as the stored timestamp type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    what = f"metric {key!r} timestamps"
    try:
        converted = pa.array(timestamps)
        if isinstance(converted, pa.ChunkedArray):
            converted = converted.combine_chunks()
        if pa.types.is_timestamp(converted.type):
            if converted.type.tz is None:
                raise InvalidValueError(
                    f"{what} have no time zone; pass aware datetimes or milliseconds"
                )
            return converted.cast(timestamp_type)
        if pa.types.is_integer(converted.type) or pa.types.is_floating(converted.type):
            micros = pc.round(pc.multiply(converted.cast(pa.float64()), 1000.0))
            return micros.cast(pa.int64()).cast(timestamp_type)
    except InvalidValueError:
        raise
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as error:
        raise InvalidValueError(f"{what} cannot be read: {error}") from None
    raise InvalidValueError(f"{what} must be datetimes or milliseconds, got {converted.type}")
