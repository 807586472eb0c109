"""One module per tool for ``benchmarks/run.py``: the same scenarios, each with the tool's own API.

Each module has ``PACKAGE`` (the import name whose absence means "not installed"),
``log(scenario, folder, n)``, ``count(scenario, folder)``, ``build(folder, n)`` and
``search(folder)``. ``log`` runs in a fresh
process whose working directory is ``folder`` (empty, temporary), imports the tool inside
the timed part for scenario ``one_run`` only, and returns ``{"log_s": ..., ...}``: the
seconds spent in the logging calls (perf_counter). ``count`` runs afterwards in another fresh
process, reads what ``log`` stored through the tool's own reading API and returns
``{"metrics": <metric values stored>, "params": <params stored>}``.

The ``search`` scenario is different: ``build`` stores ``n`` runs once (untimed, with the
tool's fastest write API) from ``search_data(n)`` and returns their run ids in that order;
then each repeat is a fresh process running ``search``, which imports the tool, finds the
top ``SEARCH_TOP`` runs of ``SEARCH_FILTER`` by latest ``acc`` and reads the full history
of the first one, and returns ``{"import_s", "search_s", "history_s", "top": [[run_id,
acc], ...], "history": [[step, value], ...]}``, checked by ``benchmarks/run.py`` against
``search_answer(n)``.

Scenarios (``n`` is the number of values or runs):

``one_run``     import, start a run, log one param and one metric, end the run
``calls``       one run, ``n`` metric values logged one call at a time
``runs``        ``n`` runs with one param and one metric each
``many_runs``   ``n`` runs, each ``VALUES_PER_RUN`` metric values logged one call at a time
                (steps 0, 1, ...), no params: the shape of many training loops
``short_runs``  ``n`` runs, each one param and ``SHORT_RUN_VALUES`` metric values logged
                one call at a time: a sweep of short runs
``array``       one run, ``n`` float64 values from a NumPy array logged at once with the
                tool's best API
``search``      ``n`` runs with param ``lr`` and a ``SEARCH_STEPS``-value history of ``acc``,
                searched (see above)
"""

from __future__ import annotations

import time
from typing import Any

PARAM_KEY = "lr"
PARAM_VALUE = 0.01
METRIC_KEY = "loss"
VALUES_PER_RUN = 1_000  # many_runs
SHORT_RUN_VALUES = 100  # short_runs

SEARCH_KEY = "acc"
SEARCH_STEPS = 100
SEARCH_LR = "0.004"  # the lr searched for, as the text every tool stores or compares
SEARCH_ABOVE = 0.5
SEARCH_TOP = 10
SEARCH_FILTER = f"metrics.{SEARCH_KEY} > {SEARCH_ABOVE} and params.{PARAM_KEY} = '{SEARCH_LR}'"
SEARCH_ORDER = f"metrics.{SEARCH_KEY} DESC"


def values(n: int) -> Any:
    """The values of the ``array`` scenario, generated outside the timed part."""
    import numpy as np

    return np.random.default_rng(20240601).random(n)


def metric_key(scenario: str) -> str:
    """The metric a scenario logs: ``acc`` for search, ``loss`` for the others."""
    return SEARCH_KEY if scenario == "search" else METRIC_KEY


def search_data(n: int) -> list[tuple[float, list[float]]]:
    """The ``n`` runs of the search scenario, in order: (lr, history of acc at steps 0, 1, ...).

    Run ``i`` has lr 0.001 * (i % 10 + 1), so 0.004 is one run in ten. Every acc value is
    uniform in [0, 1) from a fixed seed: the latest value of a run is rarely its largest or
    its first, so a search on anything but the latest value finds other runs. Pure Python
    (no NumPy): the floor's search process must not import more than pyarrow.
    """
    import random

    rng = random.Random(20240601)
    return [
        (round(0.001 * (index % 10 + 1), 3), [rng.random() for _ in range(SEARCH_STEPS)])
        for index in range(n)
    ]


def search_answer(n: int) -> tuple[list[tuple[int, float]], list[list[float]]]:
    """What the search must find in ``search_data(n)``: (index, latest acc) of the top
    ``SEARCH_TOP`` runs, best first, and the [step, value] history of the first."""
    runs = search_data(n)
    matching = [
        (index, history[-1])
        for index, (lr, history) in enumerate(runs)
        if str(lr) == SEARCH_LR and history[-1] > SEARCH_ABOVE
    ]
    top = sorted(matching, key=lambda item: -item[1])[:SEARCH_TOP]
    history = [[step, value] for step, value in enumerate(runs[top[0][0]][1])]
    return top, history


def clock() -> float:
    return time.perf_counter()


def search_result(
    times: tuple[float, float, float, float], top: list[list[Any]], history: list[list[Any]]
) -> dict[str, Any]:
    """What ``search`` returns, from the clock at its start, after the import, after the
    search and after the history."""
    start, imported, searched, ended = times
    return {
        "import_s": imported - start,
        "search_s": searched - imported,
        "history_s": ended - searched,
        "top": top,
        "history": history,
    }
