"""The floor: pyarrow alone writes the same rows to Parquet (``pyarrow.parquet.write_table``).

Metric rows are (run_id, key, value, step, timestamp), param rows (run_id, key, value); one
file of each per process, the least a writer can do. Strings are dictionary arrays (int32
codes and a small dictionary), numbers are typed buffers (``array.array``) that become
Arrow arrays without a per-value conversion, as lakestore's writer does: ``pa.array`` on
Python objects, NumPy arrays or Python scalars imports pandas (about 200 ms) whenever it is
installed, which no writer has to pay. Values logged one at a time are appended to those
buffers, each with its step and the time of the call. Only the ``array`` scenario has NumPy
arrays, the values it is given; its other columns are NumPy too, built from buffers as well.

The search scenario reads the floor's own two files back with ``pyarrow.parquet`` and
``pyarrow.compute`` only (``pyarrow.dataset``, ``pq.read_table`` and ``Table.group_by`` all
import pandas): params filtered to lr, metrics filtered to acc of those runs, sorted by run
and step, the first row of each run (its latest value) kept, then acc > x, sorted, top 10;
the history is a second read of the metrics file, filtered to the top run.
"""

from __future__ import annotations

import array
import os
import time
import uuid
from typing import Any

from peers import (
    METRIC_KEY,
    PARAM_KEY,
    PARAM_VALUE,
    SEARCH_ABOVE,
    SEARCH_KEY,
    SEARCH_LR,
    SEARCH_TOP,
    SHORT_RUN_VALUES,
    VALUES_PER_RUN,
    clock,
    search_data,
    search_result,
    values,
)

PACKAGE = "pyarrow"
METRICS = "metrics.parquet"
PARAMS = "params.parquet"


def _typed(arrow_type: Any, buffer: Any) -> Any:
    """An Arrow array of ``arrow_type`` over ``buffer`` (``array.array`` or NumPy), no copy."""
    import pyarrow as pa

    return pa.Array.from_buffers(arrow_type, len(buffer), [None, pa.py_buffer(buffer)])


def _strings(texts: list[str]) -> Any:
    """A string array from its two buffers: 32-bit offsets and the UTF-8 bytes."""
    import pyarrow as pa

    encoded = [text.encode("utf-8") for text in texts]
    offsets = array.array("i", [0])
    end = 0
    for item in encoded:
        end += len(item)
        offsets.append(end)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(texts), buffers)


def _dictionary(codes: Any, names: list[str]) -> Any:
    """A dictionary<int32, string> array: ``codes`` index ``names``."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(_typed(pa.int32(), codes), _strings(names))


def _text(value: str) -> Any:
    """A string scalar taken from a one-value array: a Python value would import pandas."""
    return _strings([value])[0]


def _float(value: float) -> Any:
    """A float64 scalar taken from a one-value array, like ``_text``."""
    import pyarrow as pa

    return _typed(pa.float64(), array.array("d", [value]))[0]


def _zeros(n: int) -> array.array[int]:
    return array.array("i", [0]) * n


def _metric_table(
    run_codes: Any,
    run_ids: list[str],
    values_: Any,
    steps: Any,
    stamps_us: Any,
    key: str = METRIC_KEY,
) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays(
        [
            _dictionary(run_codes, run_ids),
            _dictionary(_zeros(len(values_)), [key]),
            _typed(pa.float64(), values_),
            _typed(pa.int64(), steps),
            _typed(pa.timestamp("us", "UTC"), stamps_us),
        ],
        names=["run_id", "key", "value", "step", "timestamp"],
    )


def _param_table(run_codes: Any, run_ids: list[str], value_codes: Any, texts: list[str]) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays(
        [
            _dictionary(run_codes, run_ids),
            _dictionary(_zeros(len(run_codes)), [PARAM_KEY]),
            _dictionary(value_codes, texts),
        ],
        names=["run_id", "key", "value"],
    )


def _write(folder: str, metrics: Any, params: Any | None) -> None:
    import pyarrow.parquet as pq

    pq.write_table(metrics, os.path.join(folder, METRICS))
    if params is not None:
        pq.write_table(params, os.path.join(folder, PARAMS))


def _now_us() -> int:
    return time.time_ns() // 1000


def log(scenario: str, folder: str, n: int) -> dict[str, Any]:
    if scenario == "one_run":
        start = clock()
        import pyarrow.parquet  # noqa: F401 (the import is what is timed)

        imported = clock()
        run_ids = [uuid.uuid4().hex]
        metrics = _metric_table(
            _zeros(1),
            run_ids,
            array.array("d", [0.5]),
            array.array("q", [0]),
            array.array("q", [_now_us()]),
        )
        _write(folder, metrics, _param_table(_zeros(1), run_ids, _zeros(1), [str(PARAM_VALUE)]))
        ended = clock()
        return {"import_s": imported - start, "log_s": ended - imported}
    if scenario in ("calls", "many_runs", "short_runs"):
        start = clock()
        runs, calls = {
            "calls": (1, n),
            "many_runs": (n, VALUES_PER_RUN),
            "short_runs": (n, SHORT_RUN_VALUES),
        }[scenario]
        run_ids: list[str] = []
        run_codes = array.array("i")
        value_buffer = array.array("d")
        steps = array.array("q")
        stamps = array.array("q")
        for run in range(runs):
            run_ids.append(uuid.uuid4().hex)
            for step in range(calls):
                run_codes.append(run)
                value_buffer.append(0.25)
                steps.append(step)
                stamps.append(time.time_ns() // 1000)
        params = None
        if scenario == "short_runs":
            codes = array.array("i", range(runs))
            params = _param_table(codes, run_ids, _zeros(runs), [str(PARAM_VALUE)])
        _write(folder, _metric_table(run_codes, run_ids, value_buffer, steps, stamps), params)
        return {"log_s": clock() - start}
    if scenario == "runs":
        start = clock()
        run_ids = []
        run_codes = array.array("i")
        stamps = array.array("q")
        for run in range(n):
            run_ids.append(uuid.uuid4().hex)
            run_codes.append(run)
            stamps.append(_now_us())
        metrics = _metric_table(
            run_codes, run_ids, array.array("d", [0.5]) * n, array.array("q", [0]) * n, stamps
        )
        params = _param_table(run_codes, run_ids, _zeros(n), [str(PARAM_VALUE)])
        _write(folder, metrics, params)
        return {"log_s": clock() - start}
    if scenario == "array":
        import numpy as np

        series = values(n)
        start = clock()
        table = _metric_table(
            np.zeros(n, dtype=np.int32),
            [uuid.uuid4().hex],
            series,
            np.arange(n, dtype=np.int64),
            np.full(n, _now_us(), dtype=np.int64),
        )
        _write(folder, table, None)
        return {"log_s": clock() - start}
    raise ValueError(scenario)


def count(scenario: str, folder: str) -> dict[str, int]:
    del scenario
    import pyarrow.parquet as pq

    params = os.path.join(folder, PARAMS)
    return {
        "metrics": pq.read_metadata(os.path.join(folder, METRICS)).num_rows,
        "params": pq.read_metadata(params).num_rows if os.path.exists(params) else 0,
    }


# -- search ------------------------------------------------------------------------------------


def build(folder: str, n: int) -> dict[str, Any]:
    """The ``n`` runs of ``search_data`` as one metrics file and one params file."""
    runs = search_data(n)
    run_ids = [uuid.uuid4().hex for _ in runs]
    run_codes = array.array("i")
    value_buffer = array.array("d")
    steps = array.array("q")
    for index, (_, history) in enumerate(runs):
        run_codes.extend(array.array("i", [index]) * len(history))
        value_buffer.extend(history)
        steps.extend(range(len(history)))
    stamps = array.array("q", [_now_us()]) * len(value_buffer)
    metrics = _metric_table(run_codes, run_ids, value_buffer, steps, stamps, SEARCH_KEY)
    texts = sorted({str(lr) for lr, _ in runs})
    lr_codes = array.array("i", [texts.index(str(lr)) for lr, _ in runs])
    params = _param_table(array.array("i", range(n)), run_ids, lr_codes, texts)
    _write(folder, metrics, params)
    return {"run_ids": run_ids}


def _is(column: Any, text: str) -> Any:
    import pyarrow.compute as pc

    return pc.equal(column, _text(text))


def search(folder: str) -> dict[str, Any]:
    start = clock()
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    imported = clock()
    params = pq.ParquetFile(os.path.join(folder, PARAMS)).read()
    chosen = params.filter(pc.and_(_is(params["key"], PARAM_KEY), _is(params["value"], SEARCH_LR)))
    run_ids = chosen["run_id"].cast(pa.string()).combine_chunks()
    metrics = pq.ParquetFile(os.path.join(folder, METRICS)).read(
        columns=["run_id", "key", "value", "step"]
    )
    rows = metrics.filter(
        pc.and_(_is(metrics["key"], SEARCH_KEY), pc.is_in(metrics["run_id"], value_set=run_ids))
    )
    rows = rows.set_column(0, "run_id", rows["run_id"].cast(pa.string()))
    ordered = rows.sort_by([("run_id", "ascending"), ("step", "descending")])
    top: list[list[Any]] = []
    if ordered.num_rows:
        ids = ordered["run_id"]
        first_of_run = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        latest = pa.concat_tables([ordered.slice(0, 1), ordered.slice(1).filter(first_of_run)])
        above = latest.filter(pc.greater(latest["value"], _float(SEARCH_ABOVE)))
        best = above.sort_by([("value", "descending")]).slice(0, SEARCH_TOP)
        top = [
            list(pair)
            for pair in zip(best["run_id"].to_pylist(), best["value"].to_pylist(), strict=True)
        ]
    searched = clock()
    metrics = pq.ParquetFile(os.path.join(folder, METRICS)).read(
        columns=["run_id", "key", "value", "step"]
    )
    of_top_run = pc.and_(_is(metrics["run_id"], top[0][0]), _is(metrics["key"], SEARCH_KEY))
    mine = metrics.filter(of_top_run).sort_by("step")
    steps, history_values = mine["step"].to_pylist(), mine["value"].to_pylist()
    history = [list(pair) for pair in zip(steps, history_values, strict=True)]
    ended = clock()
    return search_result((start, imported, searched, ended), top, history)
