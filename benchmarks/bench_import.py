"""Benchmark of `lakestore import mlflow`: an MLflow SQLite store of 1,000 runs x 1,000
metric points, imported, against MLflow's own client reading the same data out.

Run it from the repository root, with the test extras installed (they bring MLflow's
tracking client and its SQLite store: ``pip install -e '.[test]'``)::

    python benchmarks/bench_import.py                 # 1,000 runs x 1,000 points, 3 repeats
    python benchmarks/bench_import.py --quick         # 100 runs x 1,000 points, 2 repeats
    python benchmarks/bench_import.py --json out.json

The store is written by MLflow itself, in a child process: each run created with
``MlflowClient.create_run``, given 2 params and 2 tags, its 1,000 points of ``loss`` sent
in one ``log_batch`` (steps 0 to 999, a timestamp each), and terminated. Then, in turn for
each repeat, each as a whole process from spawn to exit:

``lakestore import``
    ``lakestore import mlflow sqlite:///... --store <a new folder>``: every run, param,
    tag and point written to a new local store. Goal: under 10 s at 1,000 x 1,000.
``mlflow export``
    MLflow's own way to get the same data out: ``MlflowClient.search_runs`` over the
    experiment, then ``get_metric_history`` of each run's metric, the points written to a
    CSV file (what a user does to export a history from MLflow).

Both are checked: the store holds every point, the CSV has every row. The table gives
medians and the ratio (lakestore / MLflow; below 1 is faster). It prints machine
information and a Markdown table, and writes the samples as JSON (default:
``bench_import.json`` in the temporary folder).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_write import (
    fmt_seconds,
    load_average,
    machine_info,
    machine_markdown,
    progress,
    scenario_parser,
    write_report,
)

DEFAULT_JSON = Path(tempfile.gettempdir()) / "bench_import.json"
RUNS, RUNS_QUICK, POINTS = 1_000, 100, 1_000
GOAL_SECONDS = 10.0

WRITE = """
import sys, time
import mlflow
from mlflow.entities import Metric
runs, points = int(sys.argv[2]), int(sys.argv[3])
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
experiment = client.create_experiment("bench")
start = int(time.time() * 1000)
for index in range(runs):
    run = client.create_run(experiment, run_name=f"run-{index}", tags={"team": "bench"})
    run_id = run.info.run_id
    client.log_param(run_id, "lr", 10 ** -(index % 5))
    client.log_param(run_id, "index", index)
    client.set_tag(run_id, "seed", str(index % 7))
    client.log_batch(run_id, metrics=[
        Metric("loss", 1 / (step + 1 + index), start + step, step) for step in range(points)
    ])
    client.set_terminated(run_id)
"""

EXPORT = """
import csv, sys
import mlflow
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
experiment = client.get_experiment_by_name("bench").experiment_id
rows = 0
with open(sys.argv[2], "w", newline="") as file:
    out = csv.writer(file)
    out.writerow(["run_id", "key", "step", "timestamp", "value"])
    token = None
    while True:
        page = client.search_runs([experiment], max_results=1000, page_token=token)
        for run in page:
            for key in run.data.metrics:
                for m in client.get_metric_history(run.info.run_id, key):
                    out.writerow([run.info.run_id, key, m.step, m.timestamp, m.value])
                    rows += 1
        token = page.token
        if not token:
            break
print(rows)
"""


def _seconds(command: list[str], **options: object) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, **options)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout + done.stderr


def main(argv: list[str]) -> int:
    parser = scenario_parser(__doc__, DEFAULT_JSON, "100 runs, 2 repeats", ["import", "export"])
    args = parser.parse_args(argv)
    runs = RUNS_QUICK if args.quick else RUNS
    repeats = args.repeats or (2 if args.quick else 3)
    info = machine_info()
    started = dt.datetime.now(dt.UTC)
    folder = Path(tempfile.mkdtemp(prefix="lakestore-bench-import-"))
    lakestore_command = str(Path(sys.executable).with_name("lakestore"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAKESTORE_")}
    try:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        progress(f"MLflow logging {runs:,} runs x {POINTS:,} points")
        logged, _ = _seconds([sys.executable, "-c", WRITE, uri, str(runs), str(POINTS)])
        samples: dict[str, list[float]] = {"import": [], "export": []}
        for repeat in range(repeats):
            progress(f"repeat {repeat + 1}/{repeats}")
            store = folder / f"store-{repeat}"
            seconds, said = _seconds(
                [lakestore_command, "import", "mlflow", uri, "--store", str(store)],
                env=environment,
            )
            expected = f"imported {runs} run(s), {runs * POINTS} metric point(s)"
            if expected not in said:
                raise RuntimeError(f"the import said {said!r}, not {expected!r}")
            samples["import"].append(seconds)
            shutil.rmtree(store, ignore_errors=True)
            seconds, said = _seconds([sys.executable, "-c", EXPORT, uri, str(folder / "out.csv")])
            if said.split()[-1] != str(runs * POINTS):
                raise RuntimeError(f"MLflow exported {said.split()[-1]} rows")
            samples["export"].append(seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    info["load_average_at_end"] = load_average()
    ours, theirs = (statistics.median(samples[name]) for name in ("import", "export"))
    print(f"# lakestore import benchmark ({'quick' if args.quick else 'full'})\n")
    print(machine_markdown(info))
    print(
        f"- an MLflow SQLite store of {runs:,} runs x {POINTS:,} points (MLflow wrote it in "
        f"{fmt_seconds(logged)}); medians of {repeats} repeats, each a whole process\n"
    )
    goal = "met" if ours < GOAL_SECONDS else "MISSED"
    print("| measure | time | goal |")
    print("|---|---:|---|")
    print(f"| `lakestore import mlflow` | {fmt_seconds(ours)} | < {GOAL_SECONDS:g} s: {goal} |")
    print(f"| MLflow's client: search_runs + get_metric_history to CSV | {fmt_seconds(theirs)} | |")
    print(f"| ratio lakestore / MLflow | {ours / theirs:.3f} | |")
    write_report(
        args.json,
        "bench_import",
        started,
        info,
        settings={"runs": runs, "points": POINTS, "repeats": repeats},
        mlflow_logging_seconds=logged,
        samples=samples,
        medians={"import": ours, "export": theirs},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
