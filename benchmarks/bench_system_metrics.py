"""Benchmark of system metrics: what sampling the machine costs a training loop.

Run it from the repository root (lakestore installed)::

    python benchmarks/bench_system_metrics.py            # 5 repeats, 40,000 steps
    python benchmarks/bench_system_metrics.py --quick    # 2 repeats, 10,000 steps
    python benchmarks/bench_system_metrics.py --json out.json

The training loop is pure-Python arithmetic (2,000 multiply-adds a step, so that it holds
the interpreter as a real loop does between calls into its framework) and one
``run.log_metric("loss", ..., step=i)`` a step, timed from its first step to its last, in
a fresh process with a store of its own. Three settings, run one after the other in each
repeat:

``off``
    ``start_run()``: no sampling.
``default``
    ``start_run(log_system_metrics=True)``: a sample every 10 s.
``every_0.1s``
    ``start_run(log_system_metrics=True, system_metrics_interval=0.1)``: a hundred times
    as often as the default, to make the cost of sampling visible if it exists.

The table gives the median loop time over the repeats, its ratio to ``off`` (above 1 is
slower) and the samples taken. A last row times one sample itself (psutil reads and the
``log_metrics`` call, median of 200 in one process): at the default interval, the share
of the loop's time it takes is that figure divided by 10 s. It prints machine information
and a Markdown table to stdout (progress goes to stderr) and writes the same figures, with
every raw sample, as JSON (default: ``bench_system_metrics.json`` in the temporary folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_write import (
    CHILD,
    fmt_seconds,
    load_average,
    machine_info,
    machine_markdown,
    progress,
    run_script_child,
    scenario_parser,
    write_report,
)

DEFAULT_JSON = Path(tempfile.gettempdir()) / "bench_system_metrics.json"
SETTINGS: dict[str, float | None] = {"off": None, "default": 10.0, "every_0.1s": 0.1}
STEPS, STEPS_QUICK = 40_000, 10_000
WORK = 2_000
SAMPLE_TIMINGS = 200


def child_loop(store: str, steps: int, interval: float | None) -> dict[str, Any]:
    import lakestore

    run = lakestore.start_run(
        store=store,
        log_system_metrics=interval is not None,
        system_metrics_interval=None if interval in (None, 10.0) else interval,
    )
    total = 0.0
    start = time.perf_counter_ns()
    for step in range(steps):
        for i in range(WORK):
            total += i * 0.5
        run.log_metric("loss", total, step=step)
    loop = (time.perf_counter_ns() - start) / 1e9
    samples = run._sampler.step if run._sampler is not None else 0
    run.end()
    return {"loop_s": loop, "samples": samples}


def child_sample(store: str, steps: int, interval: float | None) -> dict[str, Any]:
    import lakestore

    run = lakestore.start_run(store=store, log_system_metrics=True)
    sampler = run._sampler
    assert sampler is not None
    timings = []
    for _ in range(SAMPLE_TIMINGS):
        start = time.perf_counter_ns()
        sampler._sample()
        timings.append((time.perf_counter_ns() - start) / 1e9)
    run.flush()
    figures = len(lakestore.connect(store).sql("SELECT DISTINCT key FROM metrics").fetchall())
    run.end()
    return {"sample_s": statistics.median(timings), "figures": figures}


CHILDREN = {"loop": child_loop, "sample": child_sample}


def _in_child(name: str, steps: int, interval: float | None) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="lakestore-bench-")
    try:
        spec = {"name": name, "store": os.path.join(folder, "store"), "steps": steps}
        spec["interval"] = interval
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LAKESTORE_")}
        return run_script_child(str(Path(__file__).resolve()), spec, environment, folder, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = scenario_parser(__doc__, DEFAULT_JSON, "2 repeats, 10,000 steps", SETTINGS)
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    steps = STEPS_QUICK if args.quick else STEPS
    settings = args.scenario or list(SETTINGS)
    info = machine_info()
    started = dt.datetime.now(dt.UTC)

    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    for repeat in range(repeats):
        for name in settings:
            progress(f"repeat {repeat + 1}/{repeats}: {name}")
            samples[name].append(_in_child("loop", steps, SETTINGS[name]))
    one_sample = _in_child("sample", 0, None)

    rows = []
    off = statistics.median(s["loop_s"] for s in samples["off"]) if "off" in samples else None
    for name, taken in samples.items():
        loop = statistics.median(s["loop_s"] for s in taken)
        rows.append(
            {
                "setting": name,
                "loop_s": loop,
                "ratio_to_off": None if off is None else loop / off,
                "samples": statistics.median(s["samples"] for s in taken),
            }
        )
    info["load_average_at_end"] = load_average()

    print(f"# lakestore system metrics benchmark ({'quick' if args.quick else 'full'})\n")
    print(machine_markdown(info))
    print(
        f"- {steps:,} steps of {WORK:,} multiply-adds and one log_metric; medians of "
        f"{repeats} repeats, each in a fresh process\n"
    )
    print("| setting | loop | ratio to off | samples taken |")
    print("|---|---:|---:|---:|")
    for row in rows:
        ratio = "" if row["ratio_to_off"] is None else f"{row['ratio_to_off']:.3f}"
        print(f"| {row['setting']} | {fmt_seconds(row['loop_s'])} | {ratio} | {row['samples']:g} |")
    share = one_sample["sample_s"] / SETTINGS["default"]  # type: ignore[operator]
    print(
        f"\nOne sample ({one_sample['figures']} figures logged): "
        f"{one_sample['sample_s'] * 1e3:.3f} ms, {share:.5%} of a loop's time at the "
        "default interval."
    )

    write_report(
        args.json,
        "bench_system_metrics",
        started,
        info,
        settings={"repeats": repeats, "steps": steps, "work": WORK, "settings": settings},
        rows=rows,
        one_sample=one_sample,
        samples=samples,
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        request = json.loads(sys.argv[2])
        child = CHILDREN[request["name"]]
        print(json.dumps(child(request["store"], request["steps"], request["interval"])))
    else:
        sys.exit(main(sys.argv[1:]))
