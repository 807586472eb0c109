"""lakestore: ``start_run``, ``log_param``, ``log_metric``, ``log_metric_series``, ``end``."""

from __future__ import annotations

import os
from typing import Any

from peers import (
    METRIC_KEY,
    PARAM_KEY,
    PARAM_VALUE,
    VALUES_PER_RUN,
    clock,
    values,
)

PACKAGE = "lakestore"
STORE = "store"


def log(scenario: str, folder: str, n: int) -> dict[str, Any]:
    store = os.path.join(folder, STORE)
    if scenario == "one_run":
        start = clock()
        import lakestore

        imported = clock()
        run = lakestore.start_run(store=store)
        run.log_param(PARAM_KEY, PARAM_VALUE)
        run.log_metric(METRIC_KEY, 0.5)
        run.end()
        ended = clock()
        return {"import_s": imported - start, "log_s": ended - imported}
    import lakestore

    if scenario == "calls":
        start = clock()
        run = lakestore.start_run(store=store)
        for step in range(n):
            run.log_metric(METRIC_KEY, 0.25, step=step)
        run.end()
        return {"log_s": clock() - start}
    if scenario == "runs":
        start = clock()
        for _ in range(n):
            run = lakestore.start_run(store=store)
            run.log_param(PARAM_KEY, PARAM_VALUE)
            run.log_metric(METRIC_KEY, 0.5)
            run.end()
        return {"log_s": clock() - start}
    if scenario == "many_runs":
        start = clock()
        for _ in range(n):
            run = lakestore.start_run(store=store)
            for step in range(VALUES_PER_RUN):
                run.log_metric(METRIC_KEY, 0.25, step=step)
            run.end()
        return {"log_s": clock() - start}
    if scenario == "array":
        array = values(n)
        start = clock()
        run = lakestore.start_run(store=store)
        run.log_metric_series(METRIC_KEY, array)
        run.end()
        return {"log_s": clock() - start}
    raise ValueError(scenario)


def count(scenario: str, folder: str) -> dict[str, int]:
    del scenario
    import lakestore

    store = lakestore.connect(os.path.join(folder, STORE))
    run_ids = [row[0] for row in store.sql("SELECT run_id FROM runs").fetchall()]
    metrics = store.metric_history(run_ids, METRIC_KEY).count("*").fetchall()[0][0]
    params = store.sql("SELECT count(*) FROM params").fetchall()[0][0]
    return {"metrics": metrics, "params": params}
