"""Benchmark of lakestore's query layer: search, history, aggregates and the CLI at scale.

Run it from the repository root (lakestore installed, e.g. ``pip install -e . numpy``)::

    python benchmarks/bench_query.py                  # 1,000 then 10,000 runs
    python benchmarks/bench_query.py --runs 1000      # one size only
    python benchmarks/bench_query.py --quick          # 200 then 1,000 runs, 100 steps
    python benchmarks/bench_query.py --json out.json

For each size it builds a synthetic store in a temporary folder (``tempfile``, so
``$TMPDIR`` chooses the disk) with the public API, in one process per core: runs spread
over 5 experiments, each run with 4 params (``lr``, ``layers``, ``optimizer``,
``batch_size``), 2 tags and 20 metrics (``loss``, ``acc`` and 18 others) of 500 steps each
(``log_metric_series``), so 10,000 runs hold 100,000,000 metric rows. Writers merge their
files as they go (docs/FORMAT.md); the store is measured as they left it, with nothing run
afterwards. On one warm ``Store`` (one untimed warm-up, then the median of the repeats),
each query read to the last row:

``search``
    ``search_runs("metrics.acc > 0.5 and params.lr > 0.001", order_by=["metrics.acc
    DESC"], max_results=10)``. Goal: under 0.3 s at 10,000 runs.
``history``
    ``metric_history(<a run>, "loss")``: a row a step. Goal: under 0.1 s.
``aggregate``
    ``SELECT run_id, max(value) FROM metrics WHERE key = 'loss' GROUP BY run_id``: reads
    every ``loss`` row.
``runs``
    ``lakestore runs --filter "<the search's filter>" --limit 10 --format csv`` as a whole
    process, spawn to exit. Goal: under 1 s.
``cli``
    ``lakestore query "SELECT run_id, status FROM runs ORDER BY start_time DESC LIMIT 5"
    --format csv`` as a whole process: time from spawn to the first line on stdout, next to
    ``python -c "import duckdb"``. Goal: under 1.5 s.

Every figure is checked (row counts) so that a fast wrong answer cannot pass. The table
gives, per measure, the figure at each size and the growth from the smallest to the
largest; the JSON (default: ``bench_query.json`` in the temporary folder) has every
sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_write import (
    Results,
    fmt_seconds,
    load_average,
    machine_info,
    machine_markdown,
    progress,
    write_report,
)

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = Path(tempfile.gettempdir()) / "bench_query.json"

EXPERIMENTS = 5
METRICS = 20
STEPS = 500
STEPS_QUICK = 100
REPEATS = 5
GOALS = {"search": 0.3, "history": 0.1, "runs_cli": 1.0, "cli": 1.5}

SEARCH_FILTER = "metrics.acc > 0.5 and params.lr > 0.001"
AGGREGATE = "SELECT run_id, max(value) FROM metrics WHERE key = 'loss' GROUP BY run_id"
CLI_QUERY = "SELECT run_id, status FROM runs ORDER BY start_time DESC LIMIT 5"


# -- building the store -------------------------------------------------------------------


def _log_runs(store: str, first: int, count: int, steps: int) -> None:
    """Log runs ``first`` to ``first + count - 1`` (runs in a child process)."""
    import numpy as np

    import lakestore

    generator = np.random.default_rng(first)
    keys = ["loss", "acc"] + [f"metric_{index:02d}" for index in range(METRICS - 2)]
    step_array = np.arange(steps)
    for index in range(first, first + count):
        with lakestore.start_run(
            store=store,
            experiment=f"experiment-{index % EXPERIMENTS}",
            run_name=f"run-{index}",
            tags={"team": f"team-{index % 3}", "seed": str(index)},
            flush_interval=3600,
        ) as run:
            run.log_params(
                {
                    "lr": float(10 ** generator.uniform(-5, -1)),
                    "layers": int(generator.integers(1, 9)),
                    "optimizer": ["adam", "sgd", "adamw"][index % 3],
                    "batch_size": int(2 ** generator.integers(4, 10)),
                }
            )
            for key in keys:
                run.log_metric_series(key, generator.random(steps), steps=step_array)


def build_store(store: str, runs: int, steps: int) -> float:
    """Log ``runs`` runs into ``store`` on every core; returns the wall time."""
    workers = os.cpu_count() or 1
    share = -(-runs // workers)
    slices = [(first, min(share, runs - first)) for first in range(0, runs, share)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(len(slices)) as pool:
        pool.starmap(_log_runs, [(store, first, count, steps) for first, count in slices])
    return time.perf_counter() - started


def count_files(store: str) -> tuple[int, int]:
    """The store's data files, and its inbox files no snapshot has merged yet."""
    from lakestore import layout
    from lakestore.storage import open_storage

    found = layout.list_experiments(open_storage(store)).values()
    files = sum(len(f.inbox) + len(f.parts) + len(f.snapshots) for f in found)
    return files, sum(len(f.unmerged()) for f in found)


def whole_process_seconds(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``command`` to its exit (it must succeed and print)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"{command} failed: {done.stderr.decode()}")
    return elapsed


# -- measuring ----------------------------------------------------------------------------


def timed(action: Any, repeats: int) -> tuple[list[float], Any]:
    """Wall times of ``repeats`` calls of ``action`` after one untimed call, and its result."""
    result = action()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        samples.append(time.perf_counter() - started)
    return samples, result


def first_line_seconds(command: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``command`` to its first line on stdout (it must succeed)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - started
    _, errors = process.communicate()
    if process.returncode != 0 or not line:
        raise RuntimeError(f"{command} failed: {errors.decode()}")
    return elapsed


def measure_size(runs: int, steps: int, repeats: int, keep: bool) -> dict[str, Any]:
    import lakestore

    folder = tempfile.mkdtemp(prefix="lakestore-bench-query-")
    store = os.path.join(folder, "store")
    figures: dict[str, Any] = {"runs": runs, "metric_rows": runs * METRICS * steps}
    try:
        progress(f"{runs} runs: logging {figures['metric_rows']:,} metric rows")
        figures["build_s"] = build_store(store, runs, steps)
        figures["files"], figures["unmerged"] = count_files(store)

        progress(f"{runs} runs: queries")
        with lakestore.connect(store) as warm:
            run_id = warm.sql("SELECT run_id FROM runs ORDER BY run_name LIMIT 1").fetchall()[0][0]
            figures["search"], found = timed(
                lambda: warm.search_runs(
                    SEARCH_FILTER, order_by=["metrics.acc DESC"], max_results=10
                ).fetchall(),
                repeats,
            )
            figures["history"], history = timed(
                lambda: warm.metric_history(run_id, "loss").fetchall(), repeats
            )
            figures["aggregate"], aggregate = timed(lambda: warm.sql(AGGREGATE).fetchall(), repeats)
            expected_matches = warm.sql(
                "SELECT count(*) FROM metric_summary s JOIN params p USING (run_id) "
                "WHERE s.key = 'acc' AND s.latest > 0.5 AND p.key = 'lr' "
                "AND p.value_float > 0.001"
            ).fetchall()[0][0]
        checks = {
            "search rows": (len(found), min(10, expected_matches)),
            "history rows": (len(history), steps),
            "aggregate rows": (len(aggregate), runs),
        }
        for what, (got, expected) in checks.items():
            if got != expected:
                raise RuntimeError(f"{runs} runs: {what} {got}, expected {expected}")

        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKESTORE_")}
        # The command installed beside this interpreter, not whichever comes first on PATH.
        lakestore_command = os.path.join(os.path.dirname(sys.executable), "lakestore")
        cli = [lakestore_command, "query", CLI_QUERY, "--store", store, "--format", "csv"]
        import_duckdb = [sys.executable, "-c", "import duckdb; print(1)"]
        runs_cli = [lakestore_command, "runs", "--filter", SEARCH_FILTER, "--limit", "10"]
        runs_cli += ["--store", store, "--format", "csv"]
        first_line_seconds(cli, env)  # warm the page cache, as for the other queries
        figures["runs_cli"], figures["cli"], figures["import_duckdb"] = [], [], []
        for _ in range(repeats):
            figures["runs_cli"].append(whole_process_seconds(runs_cli, env))
            figures["cli"].append(first_line_seconds(cli, env))
            figures["import_duckdb"].append(first_line_seconds(import_duckdb, env))
    finally:
        if keep:
            progress(f"store kept at {store}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return figures


# -- report -------------------------------------------------------------------------------

MEASURES = (
    ("search", "search: 2 filters, order by a metric, top 10", "search"),
    ("history", "metric history of one run, one key (a row a step)", "history"),
    ("aggregate", "max(value) per run of one key, all history", None),
    ("runs_cli", "`lakestore runs --filter ... --limit 10` process: spawn to exit", "runs_cli"),
    ("cli", "`lakestore query` process: spawn to first line", "cli"),
    ("import_duckdb", "reference: `python -c 'import duckdb'` to first line", None),
)


def report(results: Results, sizes: list[dict[str, Any]]) -> None:
    smallest, largest = sizes[0], sizes[-1]
    for size in sizes:
        scenario = f"{size['runs']:,} runs"
        results.add(
            scenario,
            "store as logged (parallel writers, merging on their own)",
            size["build_s"],
            "s",
            f"{size['metric_rows']:,} metric rows; logged in {fmt_seconds(size['build_s'])}; "
            f"{size['files']:,} files, {size['unmerged']:,} of them not merged yet",
        )
        for key, label, goal_key in MEASURES:
            value = statistics.median(size[key])
            goal, met = "", None
            if goal_key is not None and size is largest:
                goal, met = f"< {GOALS[goal_key]} s", value < GOALS[goal_key]
            ratio = None
            if size is largest and len(sizes) > 1:
                ratio = value / statistics.median(smallest[key])
            results.add(scenario, label, value, "s", fmt_seconds(value), goal, met, ratio)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 runs, 100 steps")
    parser.add_argument(
        "--runs", type=int, action="append", help="a store size (may be given several times)"
    )
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed repeats per query")
    parser.add_argument("--keep", action="store_true", help="keep the stores (prints where)")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the JSON results (default {DEFAULT_JSON})",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    runs = sorted(args.runs or ([200, 1000] if args.quick else [1000, 10_000]))
    steps = STEPS_QUICK if args.quick else STEPS
    info = machine_info()
    started = dt.datetime.now(dt.UTC)
    sizes = [measure_size(count, steps, args.repeats, args.keep) for count in runs]
    info["load_average_at_end"] = load_average()

    results = Results()
    report(results, sizes)
    print(f"# lakestore query benchmark ({'quick' if args.quick else 'full'})\n")
    print(machine_markdown(info))
    print(
        f"- {EXPERIMENTS} experiments, {METRICS} metrics x {steps} steps a run; medians of "
        f"{args.repeats} repeats on a warm store after one untimed call; ratio = figure at "
        f"{runs[-1]:,} runs / figure at {runs[0]:,} runs\n"
    )
    print(results.markdown())
    write_report(
        args.json,
        "bench_query",
        started,
        info,
        settings={
            "runs": runs,
            "experiments": EXPERIMENTS,
            "metrics": METRICS,
            "steps": steps,
            "repeats": args.repeats,
            "statistic": "median",
        },
        goals_s=GOALS,
        rows=results.rows,
        sizes=sizes,
    )
    return 0 if all(row["goal_met"] is not False for row in results.rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
