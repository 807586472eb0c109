"""MLflow with its default local store: SQLite, ``mlflow.db`` in the working directory.

``mlflow.set_tracking_uri("sqlite:///mlflow.db")`` names that default explicitly. The array
scenario logs ``MlflowClient().log_batch`` calls of ``MAX_METRICS_PER_BATCH`` (1,000)
metrics each, MLflow's limit for one batch. The count reads the ``metrics`` and ``params``
tables of the SQLite file with the standard library: reading 1M rows back through MLflow's
``get_metric_history`` would take long, and only the count matters here.
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
    VALUES_PER_RUN,
    clock,
    values,
)

PACKAGE = "mlflow"
URI = "sqlite:///mlflow.db"


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
