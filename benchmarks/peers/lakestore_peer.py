"""lakestore: ``start_run``, ``log_param``, ``log_metric``, ``log_metric_series``, ``end``.

The search scenario's store is built with ``log_metric_series`` (one call per run) and left
as logging leaves it, one folder of small files per run, not compacted
(``lakestore.compact``): what a user has after logging. The search is
``lakestore.connect(store).search_runs(SEARCH_FILTER, order_by=[SEARCH_ORDER],
max_results=10)``, the history ``Store.metric_history(run_id, "acc")``, both read to the
last row (``fetchall``).
"""

from __future__ import annotations

import os
from typing import Any

from peers import (
    METRIC_KEY,
    PARAM_KEY,
    PARAM_VALUE,
    SEARCH_FILTER,
    SEARCH_KEY,
    SEARCH_ORDER,
    SEARCH_TOP,
    SHORT_RUN_VALUES,
    VALUES_PER_RUN,
    clock,
    metric_key,
    search_data,
    search_result,
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
    if scenario == "short_runs":
        start = clock()
        for _ in range(n):
            run = lakestore.start_run(store=store)
            run.log_param(PARAM_KEY, PARAM_VALUE)
            for step in range(SHORT_RUN_VALUES):
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
    import lakestore

    store = lakestore.connect(os.path.join(folder, STORE))
    run_ids = [row[0] for row in store.sql("SELECT run_id FROM runs").fetchall()]
    metrics = store.metric_history(run_ids, metric_key(scenario)).count("*").fetchall()[0][0]
    params = store.sql("SELECT count(*) FROM params").fetchall()[0][0]
    return {"metrics": metrics, "params": params}


def build(folder: str, n: int) -> dict[str, Any]:
    import lakestore

    store = os.path.join(folder, STORE)
    run_ids = []
    for lr, history in search_data(n):
        run = lakestore.start_run(store=store)
        run.log_param(PARAM_KEY, lr)
        run.log_metric_series(SEARCH_KEY, history)
        run.end()
        run_ids.append(run.run_id)
    return {"run_ids": run_ids}


def search(folder: str) -> dict[str, Any]:
    start = clock()
    import lakestore

    imported = clock()
    store = lakestore.connect(os.path.join(folder, STORE))
    found = store.search_runs(SEARCH_FILTER, order_by=[SEARCH_ORDER], max_results=SEARCH_TOP)
    top = [list(row) for row in found.select(f'run_id, "metrics.{SEARCH_KEY}"').fetchall()]
    searched = clock()
    history = store.metric_history(top[0][0], SEARCH_KEY).select("step, value").fetchall()
    ended = clock()
    return search_result((start, imported, searched, ended), top, [list(row) for row in history])
