"""MLflow with its default local store: SQLite, ``mlflow.db`` in the working directory.

``mlflow.set_tracking_uri("sqlite:///mlflow.db")`` names that default explicitly. The array
scenario logs ``MlflowClient().log_batch`` calls of ``MAX_METRICS_PER_BATCH`` (1,000)
metrics each, MLflow's limit for one batch. The count reads the ``metrics`` and ``params``
tables of the SQLite file with the standard library: reading 1M rows back through MLflow's
``get_metric_history`` would take long, and only the count matters here.

The search scenario's store is built with ``MlflowClient``: ``create_run``, one
``log_batch`` of the run's param and its 100 acc values, ``set_terminated``, in experiment
``bench``. The search is ``MlflowClient().search_runs`` (run entities;
``mlflow.search_runs`` wraps the same call and converts the result to a pandas DataFrame,
importing pandas), given the experiment id from ``get_experiment_by_name``; in MLflow's
filter and order, ``metrics.acc`` is the run's latest value, as in lakestore. The history
is ``MlflowClient().get_metric_history(run_id, "acc")``.
"""

from __future__ import annotations

import os
import sqlite3
import time
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
    search_data,
    search_result,
    values,
)

PACKAGE = "mlflow"
URI = "sqlite:///mlflow.db"
EXPERIMENT = "bench"


def log(scenario: str, folder: str, n: int) -> dict[str, Any]:
    del folder  # the working directory: mlflow.db is created there
    if scenario == "one_run":
        start = clock()
        import mlflow

        imported = clock()
        mlflow.set_tracking_uri(URI)
        with mlflow.start_run():
            mlflow.log_param(PARAM_KEY, PARAM_VALUE)
            mlflow.log_metric(METRIC_KEY, 0.5)
        ended = clock()
        return {"import_s": imported - start, "log_s": ended - imported}
    import mlflow

    if scenario == "calls":
        start = clock()
        mlflow.set_tracking_uri(URI)
        with mlflow.start_run():
            for step in range(n):
                mlflow.log_metric(METRIC_KEY, 0.25, step=step)
        return {"log_s": clock() - start}
    if scenario == "runs":
        start = clock()
        mlflow.set_tracking_uri(URI)
        for _ in range(n):
            with mlflow.start_run():
                mlflow.log_param(PARAM_KEY, PARAM_VALUE)
                mlflow.log_metric(METRIC_KEY, 0.5)
        return {"log_s": clock() - start}
    if scenario == "many_runs":
        start = clock()
        mlflow.set_tracking_uri(URI)
        for _ in range(n):
            with mlflow.start_run():
                for step in range(VALUES_PER_RUN):
                    mlflow.log_metric(METRIC_KEY, 0.25, step=step)
        return {"log_s": clock() - start}
    if scenario == "short_runs":
        start = clock()
        mlflow.set_tracking_uri(URI)
        for _ in range(n):
            with mlflow.start_run():
                mlflow.log_param(PARAM_KEY, PARAM_VALUE)
                for step in range(SHORT_RUN_VALUES):
                    mlflow.log_metric(METRIC_KEY, 0.25, step=step)
        return {"log_s": clock() - start}
    if scenario == "array":
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        array = values(n)
        start = clock()
        mlflow.set_tracking_uri(URI)
        client = mlflow.MlflowClient()
        with mlflow.start_run() as run:
            now = int(time.time() * 1000)
            for first in range(0, n, MAX_METRICS_PER_BATCH):
                chunk = array[first : first + MAX_METRICS_PER_BATCH].tolist()
                batch = [
                    Metric(METRIC_KEY, value, now, first + index)
                    for index, value in enumerate(chunk)
                ]
                client.log_batch(run.info.run_id, metrics=batch)
        return {"log_s": clock() - start}
    raise ValueError(scenario)


def count(scenario: str, folder: str) -> dict[str, int]:
    del scenario
    with sqlite3.connect(os.path.join(folder, "mlflow.db")) as connection:
        metrics = connection.execute("SELECT count(*) FROM metrics").fetchone()[0]
        params = connection.execute("SELECT count(*) FROM params").fetchone()[0]
    return {"metrics": metrics, "params": params}


def build(folder: str, n: int) -> dict[str, Any]:
    del folder  # the working directory: mlflow.db is created there
    import mlflow
    from mlflow.entities import Metric, Param

    mlflow.set_tracking_uri(URI)
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment(EXPERIMENT)
    now = int(time.time() * 1000)
    run_ids = []
    for lr, history in search_data(n):
        run_id = client.create_run(experiment_id).info.run_id
        metrics = [Metric(SEARCH_KEY, value, now, step) for step, value in enumerate(history)]
        client.log_batch(run_id, metrics=metrics, params=[Param(PARAM_KEY, str(lr))])
        client.set_terminated(run_id)
        run_ids.append(run_id)
    return {"run_ids": run_ids}


def search(folder: str) -> dict[str, Any]:
    del folder  # the working directory: mlflow.db is there
    start = clock()
    import mlflow

    imported = clock()
    mlflow.set_tracking_uri(URI)
    client = mlflow.MlflowClient()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    found = client.search_runs(
        [experiment_id], SEARCH_FILTER, order_by=[SEARCH_ORDER], max_results=SEARCH_TOP
    )
    top = [[run.info.run_id, run.data.metrics[SEARCH_KEY]] for run in found]
    searched = clock()
    history = client.get_metric_history(top[0][0], SEARCH_KEY)
    ended = clock()
    return search_result(
        (start, imported, searched, ended), top, [[metric.step, metric.value] for metric in history]
    )
