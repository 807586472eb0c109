"""MLtraq with a SQLite file (``sqlite:///mltraq.db``; its default is an in-memory database).

A run's param and metric are ``run.fields``; values logged one at a time go to a
``mltraq.Sequence`` (``append``); the array scenario stores the NumPy array as a field.
Nothing reaches the database before ``experiment.persist()``, which is inside the timed part.
The count loads the experiment back with ``session.load_experiment``.
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

PACKAGE = "mltraq"
URL = "sqlite:///mltraq.db"
EXPERIMENT = "bench"


def log(scenario: str, folder: str, n: int) -> dict[str, Any]:
    del folder  # the working directory: mltraq.db is created there
    if scenario == "one_run":
        start = clock()
        import mltraq

        imported = clock()
        experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
        with experiment.run() as run:
            run.fields[PARAM_KEY] = PARAM_VALUE
            run.fields[METRIC_KEY] = 0.5
        experiment.persist()
        ended = clock()
        return {"import_s": imported - start, "log_s": ended - imported}
    import mltraq

    if scenario == "calls":
        start = clock()
        experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
        with experiment.run() as run:
            run.fields[METRIC_KEY] = mltraq.Sequence()
            for step in range(n):
                run.fields[METRIC_KEY].append(step=step, value=0.25)
        experiment.persist()
        return {"log_s": clock() - start}
    if scenario == "runs":
        start = clock()
        experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
        for _ in range(n):
            with experiment.run() as run:
                run.fields[PARAM_KEY] = PARAM_VALUE
                run.fields[METRIC_KEY] = 0.5
        experiment.persist()
        return {"log_s": clock() - start}
    if scenario == "many_runs":
        start = clock()
        experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
        for _ in range(n):
            with experiment.run() as run:
                run.fields[METRIC_KEY] = mltraq.Sequence()
                for step in range(VALUES_PER_RUN):
                    run.fields[METRIC_KEY].append(step=step, value=0.25)
        experiment.persist()
        return {"log_s": clock() - start}
    if scenario == "array":
        array = values(n)
        start = clock()
        experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
        with experiment.run() as run:
            run.fields[METRIC_KEY] = array
        experiment.persist()
        return {"log_s": clock() - start}
    raise ValueError(scenario)


def count(scenario: str, folder: str) -> dict[str, int]:
    del folder
    import mltraq

    experiment = mltraq.create_session(URL).load_experiment(EXPERIMENT)
    metrics = params = 0
    for run in experiment.runs.values():
        value = run.fields[METRIC_KEY]
        metrics += len(value) if scenario in ("calls", "many_runs", "array") else 1
        params += PARAM_KEY in run.fields
    return {"metrics": metrics, "params": params}
