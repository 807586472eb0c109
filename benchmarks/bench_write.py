"""Benchmark of lakestore's write path: logging calls, bulk series, and a whole short process.

Run it from the repository root (lakestore installed, e.g. ``pip install -e .``)::

    python benchmarks/bench_write.py            # full run: 5 repeats, 100M-point series
    python benchmarks/bench_write.py --quick    # 2 repeats, 10M-point series
    python benchmarks/bench_write.py --json out.json
    python benchmarks/bench_write.py --scenario series_100m --repeats 3

It prints machine information and a Markdown table to stdout (progress goes to stderr) and
writes the same figures, with every raw sample, the machine information and the command
line, as JSON (default: ``bench_write.json`` in the temporary folder).

Scenarios, each repeat in fresh Python subprocesses with its own temporary store folder
(``tempfile``, so ``$TMPDIR`` chooses the disk), removed after the repeat; the table shows
medians over the repeats:

``log_metric_1m``
    One run, 1,000,000 ``run.log_metric("loss", v, step=i)`` calls, then ``run.end()``.
    Measures the loop alone (time, ns per call on the logging thread, calls/s) and the
    total from the first call to the return of ``run.end()`` (all data on disk); then counts
    the metric rows in the store with ``lakestore.connect`` (must be exactly 1,000,000).
    Goals: under 1 µs per call, the whole 1M under 2 s including the final flush. A baseline
    child runs the same loop appending (key code, value, step, ``time.time_ns()``) to four
    ``array.array`` objects without lakestore: the floor of a Python call loop.

``series_100m``
    100,000,000 float64 points (10,000,000 with ``--quick``) from a NumPy array, logged with
    ``run.log_metric_series("loss", values)``, timed from the call to the return of
    ``run.end()``. The floor is pyarrow alone building the same table (key
    dictionary<int32, string>, value float64, step int64, timestamp timestamp[us, UTC]) from
    the same array and writing it with ``pyarrow.parquet.write_table(..., compression="zstd",
    store_schema=False)`` to a local file (no fsync, unlike lakestore). Generating the NumPy
    input is excluded from both; building the steps and timestamps is included in both.
    Goal: lakestore within 1.5x the floor's time. lakestore splits a large flush into files
    of 4M rows and writes them on all cores; ``pq.write_table`` encodes one file on one core,
    so a second floor writes the same 4M-row files from a thread pool: the physical limit on
    this machine. Peak RSS of each child is reported.

``process_one_run``
    Wall time of whole processes, run alternately: ``python -c "pass"``, ``python -c
    "import pyarrow.parquet"`` and a process that starts a run, logs one param and one
    metric and ends the run (10 repeats each, 3 with ``--quick``, after one untimed
    warm-up round).

The ratio column is lakestore's figure over the reference of its scenario (the
``array.array`` loop, the pyarrow floor, ``import pyarrow.parquet``): above 1 is slower.
``LAKESTORE_*`` environment variables are removed for the children, so lakestore's
defaults are measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = Path(tempfile.gettempdir()) / "bench_write.json"
CHILD = "_child"
CHILD_TIMEOUT = 3600.0

LOG_METRIC_CALLS = 1_000_000
SERIES_POINTS = 100_000_000
SERIES_POINTS_QUICK = 10_000_000
PROCESS_REPEATS = 10
PROCESS_REPEATS_QUICK = 3

GOAL_NS_PER_CALL = 1_000
GOAL_TOTAL_S = 2.0
GOAL_SERIES_RATIO = 1.5

LAKESTORE_PROCESS = (
    "import lakestore; r = lakestore.start_run(store={store!r}); "
    "r.log_param('lr', 0.01); r.log_metric('loss', 0.5); r.end()"
)


# -- children: each function runs in a fresh interpreter and returns its figures ----------


def _peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _count_metric_rows(store: str) -> int:
    import lakestore

    with lakestore.connect(store) as opened:
        return int(opened.sql("SELECT count(*) FROM metrics").fetchall()[0][0])


def _metric_file_bytes(store: str) -> int:
    """The bytes of the metrics table's files: inbox files and parts."""
    pattern = os.path.join(store, "experiments", "*", "*", "metrics", "*.parquet")
    return sum(os.path.getsize(path) for path in glob.glob(pattern))


def child_log_metric(store: str, n: int) -> dict[str, Any]:
    import lakestore

    run = lakestore.start_run(store=store)
    v = 0.25
    start = time.perf_counter_ns()
    for i in range(n):
        run.log_metric("loss", v, step=i)
    looped = time.perf_counter_ns()
    run.end()
    ended = time.perf_counter_ns()
    return {
        "loop_s": (looped - start) / 1e9,
        "end_s": (ended - looped) / 1e9,
        "total_s": (ended - start) / 1e9,
        "rows": _count_metric_rows(store),
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def child_array_baseline(store: str, n: int) -> dict[str, Any]:
    del store  # nothing is written
    from array import array

    keys, values, steps, times = array("i"), array("d"), array("q"), array("q")
    v = 0.25
    start = time.perf_counter_ns()
    for i in range(n):
        keys.append(0)
        values.append(v)
        steps.append(i)
        times.append(time.time_ns())
    looped = time.perf_counter_ns()
    assert len(values) == n
    return {"loop_s": (looped - start) / 1e9, "peak_rss_bytes": _peak_rss_bytes()}


def _series_input(n: int) -> Any:
    import numpy as np

    return np.random.default_rng(20240601).random(n)


def child_series_lakestore(store: str, n: int) -> dict[str, Any]:
    import lakestore

    values = _series_input(n)
    run = lakestore.start_run(store=store)
    start = time.perf_counter_ns()
    run.log_metric_series("loss", values)
    returned = time.perf_counter_ns()
    run.end()
    ended = time.perf_counter_ns()
    return {
        "call_s": (returned - start) / 1e9,
        "total_s": (ended - start) / 1e9,
        "rows": _count_metric_rows(store),
        "bytes_on_disk": _metric_file_bytes(store),
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def _floor_table(values: Any) -> Any:
    """The table lakestore stores for a series, built by pyarrow and NumPy alone."""
    import numpy as np
    import pyarrow as pa

    n = len(values)
    keys = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array(["loss"], pa.string())
    )
    now_us = time.time_ns() // 1000
    stamps = pa.array(np.full(n, now_us, dtype=np.int64)).view(pa.timestamp("us", tz="UTC"))
    return pa.Table.from_arrays(
        [keys, pa.array(values), pa.array(np.arange(n, dtype=np.int64)), stamps],
        names=["key", "value", "step", "timestamp"],
    )


def _floor_child(store: str, n: int, rows_per_file: int, threads: int) -> dict[str, Any]:
    """Build the table, then write it as files of ``rows_per_file`` rows on ``threads``."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    values = _series_input(n)
    start = time.perf_counter_ns()
    table = _floor_table(values)
    built = time.perf_counter_ns()
    files = (n + rows_per_file - 1) // rows_per_file
    paths = [os.path.join(store, f"floor-{index:04d}.parquet") for index in range(files)]

    def write(index: int) -> None:
        piece = table.slice(index * rows_per_file, rows_per_file)
        pq.write_table(piece, paths[index], compression="zstd", store_schema=False)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(files)))
    ended = time.perf_counter_ns()
    return {
        "build_s": (built - start) / 1e9,
        "write_s": (ended - built) / 1e9,
        "total_s": (ended - start) / 1e9,
        "rows": sum(pq.ParquetFile(path).metadata.num_rows for path in paths),
        "bytes_on_disk": _folder_bytes(store),
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def child_series_floor(store: str, n: int) -> dict[str, Any]:
    """pyarrow's own write: the whole table as one file, ``pq.write_table``."""
    return _floor_child(store, n, rows_per_file=n, threads=1)


def child_series_floor_parallel(store: str, n: int) -> dict[str, Any]:
    """The same table written as lakestore splits it: 4M-row files, one thread per core."""
    return _floor_child(store, n, rows_per_file=4 * 1024 * 1024, threads=os.cpu_count() or 1)


def _folder_bytes(folder: str) -> int:
    return sum(entry.stat().st_size for entry in Path(folder).rglob("*.parquet"))


CHILDREN = {
    "log_metric": child_log_metric,
    "array_baseline": child_array_baseline,
    "series_lakestore": child_series_lakestore,
    "series_floor": child_series_floor,
    "series_floor_parallel": child_series_floor_parallel,
}


def child_main(spec: str) -> None:
    request = json.loads(spec)
    result = CHILDREN[request["name"]](request["store"], request["n"])
    print(json.dumps(result))


# -- parent: spawning children --------------------------------------------------------------


def _child_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("LAKESTORE_")}


def _fresh_store() -> str:
    return tempfile.mkdtemp(prefix="lakestore-bench-")


def run_script_child(
    script: str,
    spec: dict[str, Any],
    env: dict[str, str],
    cwd: str,
    what: str,
    timeout: float = CHILD_TIMEOUT,
) -> dict[str, Any]:
    """Run ``script``'s child mode with ``spec`` in a fresh interpreter; the JSON object it
    prints last. Its stderr is passed on; a failure raises, naming ``what``."""
    done = subprocess.run(
        [sys.executable, script, CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if done.stderr.strip():
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"child {what} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(name: str, n: int) -> dict[str, Any]:
    """Run one child function in a fresh interpreter with its own temporary store."""
    store = _fresh_store()
    try:
        spec = {"name": name, "store": store, "n": n}
        script = str(Path(__file__).resolve())
        return run_script_child(script, spec, _child_env(), store, f"{name} (n={n})")
    finally:
        shutil.rmtree(store, ignore_errors=True)


def time_process(code: str) -> float:
    """Wall time in seconds of ``python -c code``, from spawn to exit."""
    store = _fresh_store()
    try:
        start = time.perf_counter_ns()
        done = subprocess.run(
            [sys.executable, "-c", code.format(store=os.path.join(store, "store"))],
            capture_output=True,
            text=True,
            env=_child_env(),
            cwd=store,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        elapsed = (time.perf_counter_ns() - start) / 1e9
    finally:
        shutil.rmtree(store, ignore_errors=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"python -c {code!r} failed with exit code {done.returncode}")
    return elapsed


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- parent: results -----------------------------------------------------------------------


class Results:
    """Rows of the table, and the raw samples behind them."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.samples: dict[str, dict[str, list[Any]]] = {}
        self.failures: list[str] = []

    def add(
        self,
        scenario: str,
        measure: str,
        value: float,
        unit: str,
        text: str,
        goal: str = "",
        met: bool | None = None,
        ratio: float | None = None,
    ) -> None:
        if met is not None:
            goal = f"{goal}: {'met' if met else 'MISSED'}"
        self.rows.append(
            {
                "scenario": scenario,
                "measure": measure,
                "value": value,
                "unit": unit,
                "text": text,
                "goal": goal,
                "goal_met": met,
                "ratio": ratio,
            }
        )

    def markdown(self) -> str:
        lines = [
            "| scenario | measure | value | goal | ratio |",
            "|---|---|---:|---|---:|",
        ]
        for row in self.rows:
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            lines.append(
                f"| {row['scenario']} | {row['measure']} | {row['text']} | {row['goal']} "
                f"| {ratio} |"
            )
        return "\n".join(lines)


def median(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.3f} s"


def fmt_rate(per_second: float, what: str) -> str:
    return f"{per_second / 1e6:.2f} M {what}/s"


def fmt_bytes(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def bench_log_metric(results: Results, repeats: int) -> None:
    n = LOG_METRIC_CALLS
    name = "log_metric_1m"
    lake: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    for repeat in range(repeats):
        progress(f"{name}: repeat {repeat + 1}/{repeats}")
        lake.append(run_child("log_metric", n))
        base.append(run_child("array_baseline", n))
    results.samples[name] = {"lakestore": lake, "array_baseline": base}

    loop, base_loop = median(lake, "loop_s"), median(base, "loop_s")
    per_call, base_per_call = loop / n * 1e9, base_loop / n * 1e9
    total = median(lake, "total_s")
    add = results.add
    add(name, "lakestore: loop of 1M log_metric calls", loop, "s", fmt_seconds(loop))
    add(
        name,
        "lakestore: cost per call, logging thread",
        per_call,
        "ns",
        f"{per_call:.0f} ns",
        "< 1 µs",
        per_call < GOAL_NS_PER_CALL,
        per_call / base_per_call,
    )
    add(name, "lakestore: calls/s", n / loop, "1/s", fmt_rate(n / loop, "calls"))
    end = median(lake, "end_s")
    add(name, "lakestore: run.end() (final flush)", end, "s", fmt_seconds(end))
    add(
        name,
        "lakestore: total, 1M calls + run.end()",
        total,
        "s",
        fmt_seconds(total),
        "< 2 s",
        total < GOAL_TOTAL_S,
    )
    counts = sorted({sample["rows"] for sample in lake})
    exact = counts == [n]
    if not exact:
        results.failures.append(f"{name}: metric rows on disk {counts}, expected {n}")
    add(
        name,
        "lakestore: metric rows in the store after end",
        counts[0] if exact else -1,
        "rows",
        f"{n:,}" if exact else " / ".join(f"{count:,}" for count in counts),
        f"= {n:,}",
        exact,
    )
    rss = median(lake, "peak_rss_bytes")
    add(name, "lakestore: peak RSS", rss, "bytes", fmt_bytes(rss))
    add(name, "baseline array.array: loop of 1M", base_loop, "s", fmt_seconds(base_loop))
    add(
        name,
        "baseline array.array: cost per iteration",
        base_per_call,
        "ns",
        f"{base_per_call:.0f} ns",
    )
    add(
        name,
        "baseline array.array: calls/s",
        n / base_loop,
        "1/s",
        fmt_rate(n / base_loop, "calls"),
    )


def bench_series(results: Results, repeats: int, n: int) -> None:
    name = "series_100m"
    lake: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    parallel: list[dict[str, Any]] = []
    for repeat in range(repeats):
        progress(f"{name}: repeat {repeat + 1}/{repeats} ({n:,} points)")
        lake.append(run_child("series_lakestore", n))
        floor.append(run_child("series_floor", n))
        parallel.append(run_child("series_floor_parallel", n))
    results.samples[name] = {
        "lakestore": lake,
        "pyarrow_floor": floor,
        "pyarrow_floor_parallel": parallel,
    }

    counts = sorted({sample["rows"] for sample in lake + floor + parallel})
    if counts != [n]:
        results.failures.append(f"{name}: rows on disk {counts}, expected {n}")
    add = results.add
    total, floor_total = median(lake, "total_s"), median(floor, "total_s")
    ratio = total / floor_total
    add(name, "points", n, "points", f"{n:,}")
    call = median(lake, "call_s")
    add(name, "lakestore: log_metric_series() returns", call, "s", fmt_seconds(call))
    add(name, "lakestore: call to end of run.end()", total, "s", fmt_seconds(total), ratio=ratio)
    add(name, "lakestore: points/s", n / total, "1/s", fmt_rate(n / total, "points"))
    add(
        name,
        "time lakestore / floor",
        ratio,
        "x",
        f"{ratio:.2f}x",
        "<= 1.5x",
        ratio <= GOAL_SERIES_RATIO,
        ratio,
    )
    rss, floor_rss = median(lake, "peak_rss_bytes"), median(floor, "peak_rss_bytes")
    add(name, "lakestore: peak RSS", rss, "bytes", fmt_bytes(rss), ratio=rss / floor_rss)
    size, floor_size = median(lake, "bytes_on_disk"), median(floor, "bytes_on_disk")
    add(name, "lakestore: Parquet bytes", size, "bytes", fmt_bytes(size), ratio=size / floor_size)
    build, write = median(floor, "build_s"), median(floor, "write_s")
    add(name, "floor: build Arrow table", build, "s", fmt_seconds(build))
    add(name, "floor: pq.write_table to file", write, "s", fmt_seconds(write))
    add(name, "floor: total (build + write)", floor_total, "s", fmt_seconds(floor_total))
    add(name, "floor: points/s", n / floor_total, "1/s", fmt_rate(n / floor_total, "points"))
    add(name, "floor: peak RSS", floor_rss, "bytes", fmt_bytes(floor_rss))
    add(name, "floor: Parquet bytes", floor_size, "bytes", fmt_bytes(floor_size))
    both = median(parallel, "total_s")
    add(
        name,
        "floor on all cores: 4M-row files in parallel",
        both,
        "s",
        fmt_seconds(both),
        ratio=total / both,
    )
    add(name, "floor on all cores: points/s", n / both, "1/s", fmt_rate(n / both, "points"))


def bench_process(results: Results, repeats: int) -> None:
    name = "process_one_run"
    commands = {
        "python -c pass": "pass",
        "python -c 'import pyarrow.parquet'": "import pyarrow.parquet",
        "python: start_run, log_param, log_metric, end": LAKESTORE_PROCESS,
    }
    labels = list(commands)
    times: dict[str, list[float]] = {label: [] for label in labels}
    progress(f"{name}: warm-up")
    for code in commands.values():
        time_process(code)
    for repeat in range(repeats):
        progress(f"{name}: repeat {repeat + 1}/{repeats}")
        shift = repeat % len(labels)  # rotate the order: no command always runs first
        for label in labels[shift:] + labels[:shift]:
            times[label].append(time_process(commands[label]))
    results.samples[name] = {label: [{"wall_s": t} for t in times[label]] for label in labels}

    medians = {label: statistics.median(times[label]) for label in labels}
    bare, parquet, lake = (medians[label] for label in labels)
    for label in labels:
        ratio = medians[label] / parquet if label == labels[2] else None
        results.add(name, label, medians[label], "s", fmt_seconds(medians[label]), ratio=ratio)
    results.add(
        name,
        "lakestore run minus import pyarrow.parquet",
        lake - parquet,
        "s",
        fmt_seconds(lake - parquet),
    )
    results.add(
        name, "import pyarrow.parquet minus pass", parquet - bare, "s", fmt_seconds(parquet - bare)
    )


# -- machine information -----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return fmt_bytes(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    """The commit of the lakestore checkout, and its files changed since (if any)."""
    spec = importlib.util.find_spec("lakestore")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return "lakestore not found"
    source = Path(spec.origin).parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:] for line in changed if line.strip()]
    return f"{head} + uncommitted changes to {', '.join(changed)}" if changed else head


def load_average() -> list[float] | None:
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": _memory_total(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "lakestore": _version("lakestore"),
        "lakestore_commit": _git_commit(),
        "pyarrow": _version("pyarrow"),
        "duckdb": _version("duckdb"),
        "numpy": _version("numpy"),
        "temporary_dir": tempfile.gettempdir(),
        "load_average_at_start": load_average(),
    }


def machine_markdown(info: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
            f"memory {info['memory']}",
            f"- OS: {info['os']}",
            f"- Python {info['python']}, lakestore {info['lakestore']} "
            f"(commit {info['lakestore_commit']}), pyarrow {info['pyarrow']}, "
            f"duckdb {info['duckdb']}, numpy {info['numpy']}",
            f"- temporary stores under {info['temporary_dir']}; load average (1, 5, 15 min) "
            f"at start {info['load_average_at_start']}, at end {info['load_average_at_end']}",
        ]
    )


def write_report(
    path: Path,
    benchmark: str,
    started: dt.datetime,
    machine: dict[str, Any],
    **figures: Any,
) -> None:
    """Write a benchmark's JSON report: what ran, where, when, and ``figures``."""
    report = {
        "benchmark": benchmark,
        "command": [sys.executable, *sys.argv],
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "machine": machine,
        **figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    progress(f"results written to {path}")


# -- main ----------------------------------------------------------------------------------

SCENARIOS = ("log_metric_1m", "series_100m", "process_one_run")


def scenario_parser(
    doc: str | None, default_json: Path, quick_help: str, scenarios: Iterable[str]
) -> argparse.ArgumentParser:
    """The options every scenario benchmark takes: --quick, --json, --repeats, --scenario."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--json",
        type=Path,
        default=default_json,
        help=f"where to write the JSON results (default {default_json})",
    )
    parser.add_argument("--repeats", type=int, help="repeats per scenario (default 5, quick 2)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(scenarios),
        help="run only this scenario (may be given several times)",
    )
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    quick = "2 repeats, 10M-point series, 3 process repeats"
    return scenario_parser(__doc__, DEFAULT_JSON, quick, SCENARIOS).parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    process_repeats = args.repeats or (PROCESS_REPEATS_QUICK if args.quick else PROCESS_REPEATS)
    points = SERIES_POINTS_QUICK if args.quick else SERIES_POINTS
    scenarios = args.scenario or list(SCENARIOS)
    info = machine_info()
    started = dt.datetime.now(dt.UTC)

    results = Results()
    if "log_metric_1m" in scenarios:
        bench_log_metric(results, repeats)
    if "series_100m" in scenarios:
        bench_series(results, repeats, points)
    if "process_one_run" in scenarios:
        bench_process(results, process_repeats)

    info["load_average_at_end"] = load_average()
    print(f"# lakestore write benchmark ({'quick' if args.quick else 'full'})\n")
    print(machine_markdown(info))
    print(
        f"- medians of {repeats} repeats ({process_repeats} for process_one_run), each in "
        "fresh processes; ratio = lakestore / reference of the scenario (> 1 is slower)\n"
    )
    print(results.markdown())
    for failure in results.failures:
        print(f"\nFAILED CHECK: {failure}")

    write_report(
        args.json,
        "bench_write",
        started,
        info,
        settings={
            "quick": args.quick,
            "repeats": repeats,
            "process_repeats": process_repeats,
            "log_metric_calls": LOG_METRIC_CALLS,
            "series_points": points,
            "scenarios": scenarios,
            "statistic": "median",
        },
        goals={
            "log_metric_ns_per_call_below": GOAL_NS_PER_CALL,
            "log_metric_1m_total_s_below": GOAL_TOTAL_S,
            "series_ratio_to_floor_at_most": GOAL_SERIES_RATIO,
        },
        rows=results.rows,
        samples=results.samples,
        failures=results.failures,
    )
    return 1 if results.failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        child_main(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1:]))
