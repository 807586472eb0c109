"""Metric curves drawn as text with uniplot, for ``lakestore plot``."""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING

from .output import SHORT_ID

if TYPE_CHECKING:
    import pyarrow as pa


def labels(runs: list[tuple[str, str | None]]) -> list[str]:
    """A label for each (run id, run name): the name, with the short id when another run
    plotted has the same name; the short id alone for a run without a name."""
    names = [name for _, name in runs]
    return [
        f"{name} ({run_id[:SHORT_ID]})"
        if name and names.count(name) > 1
        else name or run_id[:SHORT_ID]
        for run_id, name in runs
    ]


def curves(history: pa.Table, runs: list[tuple[str, str | None]], key: str, *, color: bool) -> str:
    """The metric ``key`` of ``runs`` by step as text, one line a run, as wide as the
    terminal (80 columns when there is none). Without ``color``, each line is drawn with
    its own ASCII character, so that the lines stay apart in a file or a pipe. NaN and
    infinities leave a gap."""
    from uniplot import plot_to_string

    series: dict[str, tuple[list[float], list[float]]] = {run_id: ([], []) for run_id, _ in runs}
    for run_id, step, value in zip(
        *(history.column(name).to_pylist() for name in ("run_id", "step", "value")), strict=True
    ):
        steps, values = series[run_id]
        steps.append(float(step))
        values.append(value if value is not None and math.isfinite(value) else math.nan)
    columns = shutil.get_terminal_size().columns
    options = {} if color else {"character_set": "ascii"}
    return plot_to_string(
        [values for _, values in series.values()],
        [steps for steps, _ in series.values()],
        legend_labels=labels(runs),
        title=f"{key} by step",
        lines=True,
        color=color,
        width=max(20, columns - 12),
        height=17,
        line_length_hard_cap=max(32, columns),
        **options,
    )
