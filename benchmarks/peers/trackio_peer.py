"""trackio, local only: ``TRACKIO_DIR`` is a folder under the temporary folder and
``HF_HUB_OFFLINE=1`` (set by ``benchmarks/run.py`` for every child), no Space, no server.

The param is the run's ``config``; metrics are ``trackio.log({...}, step=...)``. trackio has
no call for an array of values, so the array scenario logs them one ``trackio.log`` call
each. ``trackio.finish()`` (inside the timed part) waits for the background thread to write
everything to SQLite. The count reads back through ``SQLiteStorage.get_run_records``,
``get_logs`` and ``get_run_config``.

The search scenario's project is built with ``trackio.init`` (config ``{"lr": lr}``), one
``trackio.log`` per step, ``trackio.finish``. trackio's Python API (``trackio.Api``) lists
a project's runs and their configs but neither reads metric values nor filters; what
trackio offers for a search is its read-only SQL over the project's SQLite database, the
documented ``trackio query project --project P --sql "..."``, whose Python entry is
``SQLiteStorage.query_project`` (called here: the same query without a second process).
Metrics are JSON objects, one row per ``log`` call, so the query takes each run's latest
acc with ``json_extract`` and a window, joins the configs and sorts: a user must write that
SQL against trackio's schema. The history is ``SQLiteStorage.get_metric_values`` (what
``trackio get metric`` calls), ordered by timestamp, sorted by step here.
"""

from __future__ import annotations

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
    metric_key,
    search_data,
    search_result,
    values,
)

PACKAGE = "trackio"
PROJECT = "bench"
SEARCH_SQL = f"""
WITH latest AS (
    SELECT run_id, json_extract(metrics, '$.{SEARCH_KEY}') AS value,
           row_number() OVER (PARTITION BY run_id ORDER BY step DESC, id DESC) AS position
    FROM metrics WHERE json_extract(metrics, '$.{SEARCH_KEY}') IS NOT NULL
)
SELECT latest.run_id, latest.value FROM latest JOIN configs USING (run_id)
WHERE latest.position = 1 AND latest.value > {SEARCH_ABOVE}
  AND json_extract(configs.config, '$.{PARAM_KEY}') = {SEARCH_LR}
ORDER BY latest.value DESC LIMIT {SEARCH_TOP}
"""


def log(scenario: str, folder: str, n: int) -> dict[str, Any]:
    del folder  # TRACKIO_DIR is set in the environment
    if scenario == "one_run":
        start = clock()
        import trackio

        imported = clock()
        trackio.init(project=PROJECT, config={PARAM_KEY: PARAM_VALUE})
        trackio.log({METRIC_KEY: 0.5})
        trackio.finish()
        ended = clock()
        return {"import_s": imported - start, "log_s": ended - imported}
    import trackio

    if scenario == "calls":
        start = clock()
        trackio.init(project=PROJECT)
        for step in range(n):
            trackio.log({METRIC_KEY: 0.25}, step=step)
        trackio.finish()
        return {"log_s": clock() - start}
    if scenario == "runs":
        start = clock()
        for _ in range(n):
            trackio.init(project=PROJECT, config={PARAM_KEY: PARAM_VALUE})
            trackio.log({METRIC_KEY: 0.5})
            trackio.finish()
        return {"log_s": clock() - start}
    if scenario == "many_runs":
        start = clock()
        for _ in range(n):
            trackio.init(project=PROJECT)
            for step in range(VALUES_PER_RUN):
                trackio.log({METRIC_KEY: 0.25}, step=step)
            trackio.finish()
        return {"log_s": clock() - start}
    if scenario == "short_runs":
        start = clock()
        for _ in range(n):
            trackio.init(project=PROJECT, config={PARAM_KEY: PARAM_VALUE})
            for step in range(SHORT_RUN_VALUES):
                trackio.log({METRIC_KEY: 0.25}, step=step)
            trackio.finish()
        return {"log_s": clock() - start}
    if scenario == "array":
        array = values(n)
        start = clock()
        trackio.init(project=PROJECT)
        for step, value in enumerate(array.tolist()):
            trackio.log({METRIC_KEY: value}, step=step)
        trackio.finish()
        return {"log_s": clock() - start}
    raise ValueError(scenario)


def count(scenario: str, folder: str) -> dict[str, int]:
    del folder
    from trackio.sqlite_storage import SQLiteStorage

    key = metric_key(scenario)
    metrics = params = 0
    for record in SQLiteStorage.get_run_records(PROJECT):
        # By id: a run found by name alone is looked up in a scan of every metric row.
        name, run_id = record["name"], record["id"]
        logs = SQLiteStorage.get_logs(PROJECT, name, run_id=run_id)
        metrics += sum(key in entry for entry in logs)
        config = SQLiteStorage.get_run_config(PROJECT, name, run_id=run_id) or {}
        params += PARAM_KEY in config
    return {"metrics": metrics, "params": params}


def build(folder: str, n: int) -> dict[str, Any]:
    del folder  # TRACKIO_DIR is set in the environment
    import trackio

    run_ids = []
    for index, (lr, history) in enumerate(search_data(n)):
        run = trackio.init(project=PROJECT, name=f"run-{index}", config={PARAM_KEY: lr})
        for step, value in enumerate(history):
            trackio.log({SEARCH_KEY: value}, step=step)
        trackio.finish()
        run_ids.append(run.id)
    return {"run_ids": run_ids}


def search(folder: str) -> dict[str, Any]:
    del folder  # TRACKIO_DIR is set in the environment
    start = clock()
    from trackio.sqlite_storage import SQLiteStorage  # imports trackio

    imported = clock()
    found = SQLiteStorage.query_project(PROJECT, SEARCH_SQL)
    top = [[row["run_id"], row["value"]] for row in found["rows"]]
    searched = clock()
    history = SQLiteStorage.get_metric_values(PROJECT, None, SEARCH_KEY, run_id=top[0][0])
    history = sorted(history, key=lambda row: row["step"])
    ended = clock()
    return search_result(
        (start, imported, searched, ended), top, [[row["step"], row["value"]] for row in history]
    )
