"""MLtraq with a SQLite file (``sqlite:///mltraq.db``; its default is an in-memory database).

A run's param and metric are ``run.fields``; values logged one at a time go to a
``mltraq.Sequence`` (``append``); the array scenario stores the NumPy array as a field.
Nothing reaches the database before ``experiment.persist()``, which is inside the timed part.
The count loads the experiment back with ``session.load_experiment``.

MLtraq has no search or query API: an experiment is stored as one table row per run with
its fields serialized, and is read back whole. So the search scenario does what a user of
MLtraq must: ``session.load_experiment`` (every run, every field), then
``experiment.runs.df()`` (a pandas DataFrame, a ``Sequence`` per run in the acc column),
keep the runs with the lr sought, take each one's latest acc from its sequence, filter,
sort and keep the top 10 with pandas. The history of the top run is then already in
memory (``Sequence.df()``, sorted by step): its time is small because the search paid for
loading everything. The store is built the same way as the ``calls`` scenario logs: a
``Sequence`` per run, one ``append`` per step, one ``persist``.
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
    if scenario == "short_runs":
        start = clock()
        experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
        for _ in range(n):
            with experiment.run() as run:
                run.fields[PARAM_KEY] = PARAM_VALUE
                run.fields[METRIC_KEY] = mltraq.Sequence()
                for step in range(SHORT_RUN_VALUES):
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
        value = run.fields[metric_key(scenario)]
        metrics += 1 if scenario in ("one_run", "runs") else len(value)
        params += PARAM_KEY in run.fields
    return {"metrics": metrics, "params": params}


def build(folder: str, n: int) -> dict[str, Any]:
    del folder  # the working directory: mltraq.db is created there
    import mltraq

    experiment = mltraq.create_session(URL).create_experiment(EXPERIMENT)
    run_ids = []
    for lr, history in search_data(n):
        with experiment.run() as run:
            run.fields[PARAM_KEY] = lr
            run.fields[SEARCH_KEY] = mltraq.Sequence()
            for step, value in enumerate(history):
                run.fields[SEARCH_KEY].append(step=step, value=value)
        run_ids.append(str(run.id_run))
    experiment.persist()
    return {"run_ids": run_ids}


def _latest(sequence: Any) -> float:
    return float(sequence.df().sort_values("step")["value"].iloc[-1])


def search(folder: str) -> dict[str, Any]:
    del folder  # the working directory: mltraq.db is there
    start = clock()
    import mltraq

    imported = clock()
    experiment = mltraq.create_session(URL).load_experiment(EXPERIMENT)
    runs = experiment.runs.df()
    runs = runs[runs[PARAM_KEY] == float(SEARCH_LR)]
    runs = runs.assign(latest=runs[SEARCH_KEY].map(_latest))
    found = runs[runs["latest"] > SEARCH_ABOVE].sort_values("latest", ascending=False)
    found = found.head(SEARCH_TOP)
    ids, latest = found["id_run"].tolist(), found["latest"].tolist()
    top = [[str(run_id), value] for run_id, value in zip(ids, latest, strict=True)]
    searched = clock()
    history = experiment.runs[found["id_run"].iloc[0]].fields[SEARCH_KEY].df()
    history = history.sort_values("step")
    steps = [int(step) for step in history["step"].tolist()]  # float after pandas concat
    history_values = history["value"].tolist()
    ended = clock()
    return search_result(
        (start, imported, searched, ended),
        top,
        [list(pair) for pair in zip(steps, history_values, strict=True)],
    )
