"""The floor: pyarrow alone writes the same rows to Parquet (``pyarrow.parquet.write_table``).

Metric rows are (run_id, key, value, step, timestamp), param rows (run_id, key, value); one
file of each per process, the least a writer can do. Strings are dictionary arrays (int32
codes and a small dictionary), numbers are typed buffers (``array.array``) that become
Arrow arrays without a per-value conversion, as lakestore's writer does: ``pa.array`` on
Python objects, NumPy arrays or Python scalars imports pandas (about 200 ms) whenever it is
installed, which no writer has to pay. Values logged one at a time are appended to those
buffers, each with its step and the time of the call. Only the ``array`` scenario has NumPy
arrays, the values it is given; its other columns are NumPy too, built from buffers as well.
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
    VALUES_PER_RUN,
    clock,
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


def _zeros(n: int) -> array.array[int]:
    return array.array("i", [0]) * n


def _metric_table(
    run_codes: Any,
    run_ids: list[str],
    values_: Any,
    steps: Any,
    stamps_us: Any,
) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays(
        [
            _dictionary(run_codes, run_ids),
            _dictionary(_zeros(len(values_)), [METRIC_KEY]),
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
    if scenario in ("calls", "many_runs"):
        start = clock()
        runs, calls = (1, n) if scenario == "calls" else (n, VALUES_PER_RUN)
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
        _write(folder, _metric_table(run_codes, run_ids, value_buffer, steps, stamps), None)
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
