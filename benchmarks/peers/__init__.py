"""One module per tool for ``benchmarks/run.py``: the same scenarios, each with the tool's own API.

Each module has ``PACKAGE`` (the import name whose absence means "not installed"),
``log(scenario, folder, n)`` and ``count(scenario, folder)``. ``log`` runs in a fresh
process whose working directory is ``folder`` (empty, temporary), imports the tool inside
the timed part for scenario ``one_run`` only, and returns ``{"log_s": ..., ...}``: the
seconds spent in the logging calls (perf_counter). ``count`` runs afterwards in another fresh
process, reads what ``log`` stored through the tool's own reading API and returns
``{"metrics": <metric values stored>, "params": <params stored>}``.

Scenarios (``n`` is the number of values or runs):

``one_run``     import, start a run, log one param and one metric, end the run
``calls``       one run, ``n`` metric values logged one call at a time
``runs``        ``n`` runs with one param and one metric each
``many_runs``   ``n`` runs, each ``VALUES_PER_RUN`` metric values logged one call at a time
                (steps 0, 1, ...), no params: the shape of many training loops
``array``       one run, ``n`` float64 values from a NumPy array logged at once with the
                tool's best API
"""

from __future__ import annotations

import time
from typing import Any

PARAM_KEY = "lr"
PARAM_VALUE = 0.01
METRIC_KEY = "loss"
VALUES_PER_RUN = 1_000  # many_runs


def values(n: int) -> Any:
    """The values of the ``array`` scenario, generated outside the timed part."""
    import numpy as np

    return np.random.default_rng(20240601).random(n)


def clock() -> float:
    return time.perf_counter()
