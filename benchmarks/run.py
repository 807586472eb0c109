"""lakestore and its peers (MLflow, MLtraq, trackio) side by side, on this machine, in one run.

Run it from the repository root, with the peers installed (``pip install -e ".[bench]"``)::

    python benchmarks/run.py              # 5 repeats of every scenario and tool
    python benchmarks/run.py --quick      # 2 repeats
    python benchmarks/run.py --scenario calls --tools lakestore --tools mlflow --repeats 3

It prints machine information and Markdown tables to stdout (progress goes to stderr) and
writes the same figures, with every raw sample, as JSON (default
``run.json`` in the temporary folder). A tool that is not installed is reported as skipped.

Scenarios (issue 5 numbers them 1 to 6):

``one_run``    1. import the tool, start a run, log one param and one metric, end the run
``calls``      2. one run, 10,000 metric values logged one call at a time
``runs``       3. 100 runs with one param and one metric each
``many_runs``  4. 1,000 runs, each 1,000 metric values logged one call at a time (steps 0
               to 999) and no param: the shape of a training loop, many times
``short_runs`` 7. 1,000 runs, each one param and 100 metric values logged one call at a
               time: a sweep of short runs
``array``      5. one run, 1,000,000 float64 values from a NumPy array logged at once with
               each tool's best API
``search``     6. a store of 1,000 runs (param ``lr``, one of ten values; metric ``acc``,
               100 steps each): "runs with acc > 0.5 and lr = 0.004, by acc descending, top
               10" through each tool's own search API, then the full history of the top run

Every repeat of scenarios 1 to 5 and 7 for every tool is a fresh Python process (this script in
its child mode) in a fresh temporary folder (its working directory; ``tempfile``, so
``$TMPDIR`` chooses the disk), removed afterwards. Two times are measured: the whole
process, from spawn to exit, by this parent; and the logging part, by the child
(``time.perf_counter`` around the logging calls alone, from the start of a run until
everything is written: ``run.end()``, ``mlflow.end_run``, ``experiment.persist()``,
``trackio.finish()``). For ``one_run`` the child also times the import. Then a second fresh
process reads the stored data back with the tool's own API (``benchmarks/peers/``) and
counts metric values and params: any count but the expected one fails the benchmark,
loudly.

A tool that would take far too long at a scenario's full size runs a fraction of it
(``SCENARIOS[...]["scaled"]``): in ``many_runs``, MLflow (about 3.4 ms a ``log_metric``
call, an hour for 1M calls) logs 10 of the 1,000 runs. Its figures are extrapolated
linearly to the full size and labelled so in the table ("10 of 1,000 runs, x100
extrapolated") and in the JSON (``scale``, ``measured_process_s``, ``measured_log_s``):
the logging part is the measured one times the factor, the whole process the measured one
plus the logging time added (start-up and import are paid once). Ratios use the
extrapolated figures.

``search`` builds each tool's store once per invocation (not timed, with the tool's fastest
write API), in a temporary folder removed at the end, and checks its counts; each store is
as logging leaves it (lakestore's is not compacted: a folder of small files per run), and
lakestore's is searched a second time after ``lakestore.compact`` (the row
``lakestore_compacted``: one part per table instead of about 4,000 files). Each
repeat is then a fresh process in that folder that imports the tool, runs the search
(timed: the "search" column) and reads the top run's history (timed: "history"). This
parent checks the answer against a plain computation on the generated data
(``peers.search_answer``): the ten run ids and acc values, best first, and the 100 (step,
value) pairs of the history; a wrong answer fails the benchmark, loudly. It has its own
table; in the JSON its rows have ``import_s``, ``search_s``, ``history_s`` and the untimed
``build_s``.

The "floor" is a process that imports only pyarrow and writes the same rows with
``pyarrow.parquet.write_table`` (and, for ``search``, reads them back with
``pyarrow.parquet`` and ``pyarrow.compute``): the physical limit of this design on this
machine. The tables give medians over the repeats and ratios = tool time / lakestore time
(above 1: the tool is slower than lakestore). Repeats are interleaved: repeat 1 of every
tool, then repeat 2, and so on; a tool whose first repeat of a scenario took over 60 s
(``SLOW_S``) is not repeated, and the table says so. Children run with ``LAKESTORE_*``
variables removed, ``HF_HUB_OFFLINE=1``, ``MLFLOW_DISABLE_TELEMETRY=true`` (MLflow 3
otherwise looks up its telemetry host from a background thread) and ``TRACKIO_DIR`` /
``HF_HOME`` in the temporary folder: nothing leaves the machine.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

from peers import SEARCH_STEPS, SHORT_RUN_VALUES, VALUES_PER_RUN

SLOW_S = 60.0  # a tool whose first repeat takes longer than this is not repeated
CHILD = "_child"  # the same word as bench_write.CHILD: run_script_child passes it

SEARCH_ONLY_TOOLS = ("lakestore_compacted",)  # lakestore after ``lakestore compact``
TOOLS = ("lakestore", "floor", "mlflow", "mltraq", "trackio")
# "n" counts "unit"; "scaled" gives a tool a smaller n, its figures extrapolated to "n".
SCENARIOS: dict[str, dict[str, Any]] = {
    "one_run": {
        "number": 1,
        "n": 1,
        "unit": "runs",
        "title": "1. import + one run + one param + one metric + end",
        "expected": lambda n: {"metrics": 1, "params": 1},
    },
    "calls": {
        "number": 2,
        "n": 10_000,
        "unit": "values",
        "title": "2. one run, 10,000 log_metric calls",
        "expected": lambda n: {"metrics": n, "params": 0},
    },
    "runs": {
        "number": 3,
        "n": 100,
        "unit": "runs",
        "title": "3. 100 runs, one param and one metric each",
        "expected": lambda n: {"metrics": n, "params": n},
    },
    "many_runs": {
        "number": 4,
        "n": 1_000,
        "unit": "runs",
        "title": "4. 1,000 runs x 1,000 log_metric calls",
        "expected": lambda n: {"metrics": n * VALUES_PER_RUN, "params": 0},
        "scaled": {"mlflow": 10},  # about 3.4 ms a call: an hour for the full size
    },
    "short_runs": {
        "number": 7,
        "n": 1_000,
        "unit": "runs",
        "title": "7. 1,000 runs x (one param + 100 log_metric calls)",
        "expected": lambda n: {"metrics": n * SHORT_RUN_VALUES, "params": n},
        "scaled": {"mlflow": 10},
    },
    "array": {
        "number": 5,
        "n": 1_000_000,
        "unit": "values",
        "title": "5. one run, 1,000,000 float64 values at once",
        "expected": lambda n: {"metrics": n, "params": 0},
    },
    "search": {
        "number": 6,
        "n": 1_000,
        "unit": "runs",
        "title": "6. search 1,000 runs (acc > 0.5 and lr = 0.004, top 10 by acc) + one history",
        "expected": lambda n: {"metrics": n * SEARCH_STEPS, "params": n},
    },
}


def _module(tool: str) -> Any:
    return importlib.import_module(f"peers.{tool}_peer")


# -- child: one scenario of one tool, or the count that follows it ---------------------------


def child_main(spec: str) -> None:
    request = json.loads(spec)
    module = _module(request["tool"])
    if request["mode"] == "log":
        result = module.log(request["scenario"], request["folder"], request["n"])
    elif request["mode"] == "build":
        result = module.build(request["folder"], request["n"])
    elif request["mode"] == "search":
        result = module.search(request["folder"])
    else:
        result = module.count(request["scenario"], request["folder"])
    print(json.dumps(result), flush=True)


# -- parent ------------------------------------------------------------------------------------


def installed(tool: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_module(tool).PACKAGE) is not None


def _child_env(folder: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("LAKESTORE_")}
    env["HF_HUB_OFFLINE"] = "1"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # MLflow 3 sends usage telemetry by default
    env["HF_HOME"] = os.path.join(folder, "hf")
    env["TRACKIO_DIR"] = os.path.join(folder, "trackio")
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__)), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


def run_once(tool: str, scenario: str, n: int) -> dict[str, Any]:
    """One repeat: the logging process, timed from spawn to exit, then the counting process."""
    import shutil
    import tempfile
    import time

    from bench_write import load_average, run_script_child

    folder = tempfile.mkdtemp(prefix=f"lakestore-peers-{tool}-")
    script = os.path.abspath(__file__)
    env = _child_env(folder)
    what = f"{tool} {scenario} (n={n})"
    try:
        spec = {"mode": "log", "tool": tool, "scenario": scenario, "folder": folder, "n": n}
        load = load_average()
        start = time.perf_counter()
        sample = run_script_child(script, spec, env, folder, what)
        sample["process_s"] = time.perf_counter() - start
        sample["load_average_at_start"] = load
        spec["mode"] = "count"
        sample["counted"] = run_script_child(script, spec, env, folder, f"count of {what}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    expected = SCENARIOS[scenario]["expected"](n)
    if sample["counted"] != expected:
        raise RuntimeError(f"{what}: stored {sample['counted']}, expected {expected}")
    return sample


def scaled_n(scenario: str, tool: str) -> int:
    """The size ``tool`` runs ``scenario`` at: the full size unless it is scaled down."""
    spec = SCENARIOS[scenario]
    return spec.get("scaled", {}).get(tool, spec["n"])


def bench_scenario(
    results: Any, scenario: str, tools: list[str], repeats: int
) -> dict[str, list[dict[str, Any]]]:
    from bench_write import fmt_seconds, load_average, median, progress

    spec = SCENARIOS[scenario]
    present = [tool for tool in tools if installed(tool)]
    samples: dict[str, list[dict[str, Any]]] = {tool: [] for tool in present}
    for repeat in range(repeats):
        shift = repeat % max(len(present), 1)  # rotate the order: no tool always runs first
        for tool in present[shift:] + present[:shift]:
            if samples[tool] and samples[tool][0]["process_s"] > SLOW_S:
                continue  # one sample is enough to compare a process this slow
            progress(f"{scenario}: repeat {repeat + 1}/{repeats}, {tool} (load {load_average()})")
            samples[tool].append(run_once(tool, scenario, scaled_n(scenario, tool)))

    # Full-size figures: a scaled tool's logging part grows with the factor, its start-up not.
    full: dict[str, tuple[float, float]] = {}
    for tool in present:
        process, logged = median(samples[tool], "process_s"), median(samples[tool], "log_s")
        factor = spec["n"] / scaled_n(scenario, tool)
        full[tool] = (process + logged * (factor - 1), logged * factor)
    lake_process, lake_log = full.get("lakestore", (None, None))
    for tool in tools:
        if tool not in present:
            results.add(spec["title"], tool, -1, "s", "skipped (not installed)")
            continue
        process, logged = full[tool]
        text = f"{fmt_seconds(process)} (logging {fmt_seconds(logged)})"
        n_tool = scaled_n(scenario, tool)
        scale = None
        if n_tool != spec["n"]:
            scale = {"n": n_tool, "of": spec["n"], "unit": spec["unit"]}
            scale["factor"] = spec["n"] / n_tool
            text += (
                f", extrapolated x{scale['factor']:g} from {n_tool:,} of {spec['n']:,} "
                f"{spec['unit']} (measured {fmt_seconds(median(samples[tool], 'process_s'))}, "
                f"logging {fmt_seconds(median(samples[tool], 'log_s'))})"
            )
        if len(samples[tool]) < repeats:
            text += f", {len(samples[tool])} of {repeats} repeats (over {SLOW_S:.0f} s)"
        if scenario == "one_run":
            text += f", import {fmt_seconds(median(samples[tool], 'import_s'))}"
        ratio = process / lake_process if lake_process else None
        log_ratio = logged / lake_log if lake_log else None
        results.add(spec["title"], tool, process, "s", text, ratio=ratio)
        results.rows[-1]["log_s"] = logged
        results.rows[-1]["log_ratio"] = log_ratio
        results.rows[-1]["repeats"] = len(samples[tool])
        results.rows[-1]["scale"] = scale
        if scale:
            results.rows[-1]["measured_process_s"] = median(samples[tool], "process_s")
            results.rows[-1]["measured_log_s"] = median(samples[tool], "log_s")
    return samples


def build_store(tool: str, folder: str, n: int) -> dict[str, Any]:
    """Store the ``n`` runs of the search scenario with ``tool`` in ``folder`` (not timed,
    but reported) and check their counts; their run ids, in the order of ``search_data``."""
    import time

    from bench_write import run_script_child

    script = os.path.abspath(__file__)
    env = _child_env(folder)
    what = f"{tool} search store (n={n})"
    spec = {"mode": "build", "tool": tool, "scenario": "search", "folder": folder, "n": n}
    start = time.perf_counter()
    built = run_script_child(script, spec, env, folder, what)
    built["build_s"] = time.perf_counter() - start
    spec["mode"] = "count"
    counted = run_script_child(script, spec, env, folder, f"count of {what}")
    expected = SCENARIOS["search"]["expected"](n)
    if counted != expected or len(built["run_ids"]) != n:
        raise RuntimeError(
            f"{what}: stored {counted} and {len(built['run_ids'])} runs, expected {expected}"
        )
    return built


def search_once(tool: str, folder: str, run_ids: list[str], n: int) -> dict[str, Any]:
    """One repeat: a fresh process searches the store in ``folder``; its answer is checked."""
    import time

    from bench_write import load_average, run_script_child
    from peers import search_answer

    what = f"{tool} search (n={n})"
    spec = {"mode": "search", "tool": tool, "scenario": "search", "folder": folder, "n": n}
    load = load_average()
    start = time.perf_counter()
    sample = run_script_child(os.path.abspath(__file__), spec, _child_env(folder), folder, what)
    sample["process_s"] = time.perf_counter() - start
    sample["load_average_at_start"] = load
    top, history = search_answer(n)
    expected = [[run_ids[index], value] for index, value in top]
    if sample["top"] != expected:
        raise RuntimeError(f"{what}: found {sample['top']}, expected {expected}")
    if sample["history"] != history:
        raise RuntimeError(
            f"{what}: the history of {expected[0][0]} has {len(sample['history'])} values, "
            f"not the {len(history)} (step, value) pairs logged"
        )
    sample["history"] = len(history)  # checked: the JSON keeps its length only
    return sample


def bench_search(results: Any, tools: list[str], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Scenario 6: build each tool's store once, then search it in a fresh process a repeat."""
    import shutil
    import tempfile

    from bench_write import fmt_seconds, load_average, median, progress

    spec = SCENARIOS["search"]
    n = spec["n"]
    if "lakestore" in tools:  # the store as logging leaves it, and compacted
        after = tools.index("lakestore") + 1
        tools = [*tools[:after], *SEARCH_ONLY_TOOLS, *tools[after:]]
    present = [tool for tool in tools if installed(tool)]
    samples: dict[str, list[dict[str, Any]]] = {tool: [] for tool in present}
    folders: dict[str, str] = {}
    builds: dict[str, dict[str, Any]] = {}
    try:
        for tool in present:
            progress(f"search: storing {n:,} runs with {tool}, not timed (load {load_average()})")
            folders[tool] = tempfile.mkdtemp(prefix=f"lakestore-peers-{tool}-search-")
            builds[tool] = build_store(tool, folders[tool], n)
        for repeat in range(repeats):
            shift = repeat % max(len(present), 1)
            for tool in present[shift:] + present[:shift]:
                if samples[tool] and samples[tool][0]["process_s"] > SLOW_S:
                    continue
                progress(f"search: repeat {repeat + 1}/{repeats}, {tool} (load {load_average()})")
                run_ids = builds[tool]["run_ids"]
                samples[tool].append(search_once(tool, folders[tool], run_ids, n))
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)

    lake = samples.get("lakestore")
    reference = (
        {key: median(lake, key) for key in ("process_s", "search_s", "history_s")} if lake else {}
    )
    for tool in tools:
        if tool not in present:
            results.add(spec["title"], tool, -1, "s", "skipped (not installed)")
            results.rows[-1]["kind"] = "search"
            continue
        figures = {
            key: median(samples[tool], key)
            for key in ("process_s", "import_s", "search_s", "history_s")
        }
        text = (
            f"{fmt_seconds(figures['process_s'])} (import {fmt_seconds(figures['import_s'])}, "
            f"search {fmt_seconds(figures['search_s'])}, "
            f"history {fmt_seconds(figures['history_s'])})"
        )
        if len(samples[tool]) < repeats:
            text += f", {len(samples[tool])} of {repeats} repeats (over {SLOW_S:.0f} s)"
        ratios = {key: figures[key] / reference[key] for key in reference}
        results.add(
            spec["title"], tool, figures["process_s"], "s", text, ratio=ratios.get("process_s")
        )
        row = results.rows[-1]
        row.update(kind="search", repeats=len(samples[tool]), build_s=builds[tool]["build_s"])
        for key in ("import_s", "search_s", "history_s"):
            row[key] = figures[key]
        row["search_ratio"] = ratios.get("search_s")
        row["history_ratio"] = ratios.get("history_s")
    return samples


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _tool_cell(row: dict[str, Any], repeats: int) -> str:
    tool = row["measure"]
    scale = row.get("scale")
    if scale:
        share = f"{scale['n']:,} of {scale['of']:,} {scale['unit']}"
        tool += f" ({share}, x{scale['factor']:g} extrapolated)"
    if row["repeats"] < repeats:
        tool += f" ({row['repeats']} of {repeats} repeats: over {SLOW_S:.0f} s)"
    return tool


def markdown(rows: list[dict[str, Any]], repeats: int) -> str:
    """The table of scenarios 1 to 5 and, if it ran, the table of scenario 6 (search)."""
    from bench_write import fmt_seconds

    lines = [
        "| scenario | tool | whole process | vs lakestore | logging part | vs lakestore |",
        "|---|---|---:|---:|---:|---:|",
    ]
    search = [
        "| scenario | tool | whole process | vs lakestore | import | search | vs lakestore "
        "| history of the top run | vs lakestore |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    extrapolated = False
    for row in rows:
        table = search if row.get("kind") == "search" else lines
        if row["value"] < 0:
            table.append(f"| {row['scenario']} | {row['measure']} | {row['text']} |")
            continue
        tool = _tool_cell(row, repeats)
        process, ratio = fmt_seconds(row["value"]), _ratio(row["ratio"])
        if table is search:
            table.append(
                f"| {row['scenario']} | {tool} | {process} | {ratio} "
                f"| {fmt_seconds(row['import_s'])} | {fmt_seconds(row['search_s'])} "
                f"| {_ratio(row['search_ratio'])} "
                f"| {fmt_seconds(row['history_s'])} | {_ratio(row['history_ratio'])} |"
            )
            continue
        logged = fmt_seconds(row["log_s"])
        if row.get("scale"):
            extrapolated = True
            process += f" (measured {fmt_seconds(row['measured_process_s'])})"
            logged += f" (measured {fmt_seconds(row['measured_log_s'])})"
        table.append(
            f"| {row['scenario']} | {tool} | {process} | {ratio} | {logged} "
            f"| {_ratio(row['log_ratio'])} |"
        )
    parts = []
    if len(lines) > 2:
        if extrapolated:
            lines.append(
                "\nExtrapolated rows ran a fraction of the scenario: their logging part is the "
                "measured one times the factor, their whole process the measured one plus the "
                "logging time added (start-up and import are paid once)."
            )
        parts.append("\n".join(lines))
    if len(search) > 2:
        search.insert(
            0,
            "Scenario 6: each tool's store of 1,000 runs is built once, not timed; each repeat "
            "is a fresh process that imports the tool (import), searches (search) and reads the "
            "full history of the top run (history). Every answer was checked.\n",
        )
        parts.append("\n".join(search))
    return "\n\n".join(parts)


def parse_args(argv: list[str]) -> Any:
    import tempfile
    from pathlib import Path

    from bench_write import scenario_parser

    default_json = Path(tempfile.gettempdir()) / "run.json"
    parser = scenario_parser(__doc__, default_json, "2 repeats instead of 5", SCENARIOS)
    parser.add_argument(
        "--tools",
        action="append",
        choices=TOOLS,
        help="run only this tool (may be given several times; lakestore is the reference)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    import datetime as dt
    from importlib import metadata

    from bench_write import (
        Results,
        load_average,
        machine_info,
        machine_markdown,
        progress,
        write_report,
    )

    args = parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    scenarios = args.scenario or list(SCENARIOS)
    tools = [tool for tool in TOOLS if tool in (args.tools or TOOLS)]
    info = machine_info()
    for package in ("mlflow", "mltraq", "trackio"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    started = dt.datetime.now(dt.UTC)

    results = Results()
    samples: dict[str, Any] = {}
    try:
        for scenario in scenarios:
            if scenario == "search":
                samples[scenario] = bench_search(results, tools, repeats)
            else:
                samples[scenario] = bench_scenario(results, scenario, tools, repeats)
    except (RuntimeError, OSError) as error:
        results.failures.append(str(error))
        progress(f"FAILED: {error}")

    info["load_average_at_end"] = load_average()
    print(f"# lakestore and its peers ({'quick' if args.quick else 'full'})\n")
    print(machine_markdown(info))
    print(f"- peers: mlflow {info['mlflow']}, mltraq {info['mltraq']}, trackio {info['trackio']}")
    print(
        f"- medians of {repeats} repeats, each in fresh processes; whole process = spawn to "
        "exit; ratio = tool time / lakestore time (> 1: slower than lakestore)\n"
    )
    print(markdown(results.rows, repeats))
    for failure in results.failures:
        print(f"\nFAILED: {failure}")

    write_report(
        args.json,
        "run",
        started,
        info,
        settings={
            "quick": args.quick,
            "repeats": repeats,
            "scenarios": {name: SCENARIOS[name]["n"] for name in scenarios},
            "scaled": {name: SCENARIOS[name].get("scaled", {}) for name in scenarios},
            "tools": tools,
            "statistic": "median",
        },
        rows=results.rows,
        samples=samples,
        failures=results.failures,
    )
    return 1 if results.failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        child_main(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1:]))
