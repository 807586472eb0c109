"""trackio, local only: ``TRACKIO_DIR`` is a folder under the temporary folder and
``HF_HUB_OFFLINE=1`` (set by ``benchmarks/run.py`` for every child), no Space, no server.

The param is the run's ``config``; metrics are ``trackio.log({...}, step=...)``. trackio has
no call for an array of values, so the array scenario logs them one ``trackio.log`` call
each. ``trackio.finish()`` (inside the timed part) waits for the background thread to write
everything to SQLite. The count reads back through ``SQLiteStorage.get_logs`` and
``get_runs``.
"""

from __future__ import annotations

from typing import Any

from peers import METRIC_KEY, PARAM_KEY, PARAM_VALUE, clock, values

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
    for run in SQLiteStorage.get_runs(PROJECT):
        logs = SQLiteStorage.get_logs(PROJECT, run)
        metrics += sum(METRIC_KEY in entry for entry in logs)
        config = SQLiteStorage.get_run_config(PROJECT, run) or {}
        params += PARAM_KEY in config
    return {"metrics": metrics, "params": params}
