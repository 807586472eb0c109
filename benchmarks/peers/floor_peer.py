"""The floor: pyarrow alone writes the same rows to Parquet (``pyarrow.parquet.write_table``).

Metric rows are (run_id, key, value, step, timestamp), param rows (run_id, key, value); one
file of each per process. Values logged one at a time are appended to Python lists first.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from peers import METRIC_KEY, PARAM_KEY, PARAM_VALUE, clock, values

PACKAGE = "pyarrow"


def _write(folder: str, metrics: dict[str, Any], params: dict[str, Any] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(metrics), os.path.join(folder, "metrics.parquet"))
    if params is not None:
        pq.write_table(pa.table(params), os.path.join(folder, "params.parquet"))


def _metric_columns(run_ids: list[str], steps: list[int], value_list: Any) -> dict[str, Any]:
    import pyarrow as pa

    now = time.time_ns() // 1000
    return {
        "run_id": run_ids,
        "key": [METRIC_KEY] * len(run_ids),
        "value": value_list,
        "step": steps,
        "timestamp": pa.array([now] * len(run_ids), pa.timestamp("us", "UTC")),
    }


def _param_columns(run_ids: list[str]) -> dict[str, Any]:
    return {
        "run_id": run_ids,
        "key": [PARAM_KEY] * len(run_ids),
        "value": [str(PARAM_VALUE)] * len(run_ids),
    }


def log(scenario: str, folder: str, n: int) -> dict[str, Any]:
    if scenario == "one_run":
        start = clock()
        import pyarrow
        import pyarrow.parquet

        imported = clock()
        run_ids = [uuid.uuid4().hex]
        _write(folder, _metric_columns(run_ids, [0], [0.5]), _param_columns(run_ids))
        ended = clock()
        return {"import_s": imported - start, "log_s": ended - imported}
    if scenario == "calls":
        start = clock()
        run_id = uuid.uuid4().hex
        run_ids: list[str] = []
        steps: list[int] = []
        value_list: list[float] = []
        for step in range(n):
            run_ids.append(run_id)
            steps.append(step)
            value_list.append(0.25)
        _write(folder, _metric_columns(run_ids, steps, value_list), None)
        return {"log_s": clock() - start}
    if scenario == "runs":
        start = clock()
        run_ids = [uuid.uuid4().hex for _ in range(n)]
        _write(folder, _metric_columns(run_ids, [0] * n, [0.5] * n), _param_columns(run_ids))
        return {"log_s": clock() - start}
    if scenario == "array":
        import numpy as np
        import pyarrow as pa

        array = values(n)
        start = clock()
        columns = {
            "run_id": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([uuid.uuid4().hex])
            ),
            "key": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([METRIC_KEY])
            ),
            "value": pa.array(array),
            "step": pa.array(np.arange(n, dtype=np.int64)),
            "timestamp": pa.array(
                np.full(n, time.time_ns() // 1000, dtype=np.int64), pa.timestamp("us", "UTC")
            ),
        }
        _write(folder, columns, None)
        return {"log_s": clock() - start}
    raise ValueError(scenario)


def count(scenario: str, folder: str) -> dict[str, int]:
    del scenario
    import pyarrow.parquet as pq

    params = os.path.join(folder, "params.parquet")
    return {
        "metrics": pq.read_metadata(os.path.join(folder, "metrics.parquet")).num_rows,
        "params": pq.read_metadata(params).num_rows if os.path.exists(params) else 0,
    }
