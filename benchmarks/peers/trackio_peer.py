"""trackio, local only: ``TRACKIO_DIR`` is a folder under the temporary folder and
``HF_HUB_OFFLINE=1`` (set by ``benchmarks/run.py`` for every child), no Space, no server.

The param is the run's ``config``; metrics are ``trackio.log({...}, step=...)``. trackio has
no call for an array of values, so the array scenario logs them one ``trackio.log`` call
each. ``trackio.finish()`` (inside the timed part) waits for the background thread to write
everything to SQLite. The count reads back through ``SQLiteStorage.get_run_records``,
``get_logs`` and ``get_run_config``.
"""

from __future__ import annotations

from typing import Any

from peers import (
    METRIC_KEY,
    PARAM_KEY,
    PARAM_VALUE,
    VALUES_PER_RUN,
    clock,
    values,
)

PACKAGE = "trackio"
PROJECT = "bench"


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
    del scenario, folder
    from trackio.sqlite_storage import SQLiteStorage

    metrics = params = 0
    for record in SQLiteStorage.get_run_records(PROJECT):
        # By id: a run found by name alone is looked up in a scan of every metric row.
        name, run_id = record["name"], record["id"]
        logs = SQLiteStorage.get_logs(PROJECT, name, run_id=run_id)
        metrics += sum(METRIC_KEY in entry for entry in logs)
        config = SQLiteStorage.get_run_config(PROJECT, name, run_id=run_id) or {}
        params += PARAM_KEY in config
    return {"metrics": metrics, "params": params}
