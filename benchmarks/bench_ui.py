"""Benchmark of the dashboard (``lakestore ui``) in a real headless Chromium.

Measures, on stores written for it, from the page's request to the charts drawn (the page
says so: ``window.lakestore.ready`` with every chart built):

- 10 runs x 3 metrics x 100,000 steps, every run selected (goal: under 1 s warm);
- one run of 10,000,000 points, on its run page (goal: under 1 s warm);
- the runs table of a 10,000-run experiment: first rows drawn (goal: under 1 s);

and the page's own weight (goal: under 300 KB uncompressed, no request leaving the
server). Warm: the second load of the same view by the same server. Prints a table and
writes JSON.

    python benchmarks/bench_ui.py [--quick] [--json PATH] [--screenshots docs/]

Needs Debian's chromium (or ``$LAKESTORE_CHROMIUM``) and playwright (the test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

import lakestore

STATIC = Path(lakestore.__file__).parent / "ui_static"
METRIC_NAMES = ["train/loss", "val/loss", "val/acc"]


def _log_long_runs(store: str, runs: int, metrics: int, steps: int, experiment: str) -> list[str]:
    ids = []
    for index in range(runs):
        with lakestore.start_run(store=store, experiment=experiment, run_name=f"run{index}") as run:
            run.log_param("lr", 10.0 ** -(index % 4 + 1))
            rate = 1 + index / 3
            for metric in range(metrics):
                noise = np.random.default_rng(index * 10 + metric).normal(0, 0.01, steps)
                decay = 1 / (1 + rate * np.arange(steps) * 10 / steps)
                values = (1 - decay if metric == 2 else decay * (1 + metric / 5)) + noise
                run.log_metric_series(METRIC_NAMES[metric], values)
        ids.append(run.run_id)
    return ids


def _short_run(args: tuple[str, int]) -> None:
    store, index = args
    with lakestore.start_run(store=store, experiment="big", run_name=f"run{index}") as run:
        run.log_params({"lr": 10.0 ** -(index % 4 + 1), "seed": index})
        run.log_metric("acc", (index % 100) / 100)


def _log_many_runs(store: str, runs: int) -> None:
    with Pool(2) as pool:
        pool.map(_short_run, [(store, index) for index in range(runs)], chunksize=50)
    lakestore.compact(store, grace=0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(store: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        ["lakestore", "ui", "--store", store, "--port", str(_free_port()), "--refresh", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    while True:
        line = process.stderr.readline()
        if not line:
            raise RuntimeError("lakestore ui exited")
        if line.startswith("lakestore ui: "):
            return process, line.split()[2]


def _time_view(browser: Any, url: str, ready: str, repeats: int) -> tuple[float, float]:
    """Seconds from the request to ``ready`` being true: the first (cold) load, and the
    median of ``repeats`` loads after it (warm), each in a new page."""
    times = []
    for _ in range(repeats + 1):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function(ready, timeout=120_000)
        times.append(time.perf_counter() - started)
        page.close()
    return times[0], statistics.median(times[1:])


def _page_weight(browser: Any, url: str) -> tuple[int, list[str]]:
    """Bytes the page loads, and any request to elsewhere than its server."""
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    page.wait_for_function("window.lakestore && window.lakestore.ready", timeout=60_000)
    page.close()
    static = [u for u in requested if "/api/" not in u]
    weight = sum((STATIC / u.rsplit("/", 1)[-1]).stat().st_size for u in static if "/static/" in u)
    index_html = (STATIC / "index.html").stat().st_size
    elsewhere = [u for u in requested if not u.startswith(url.rstrip("/"))]
    return weight + index_html, elsewhere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="/tmp/bench_ui.json")
    parser.add_argument("--screenshots", help="save screenshots of the main views here")
    options = parser.parse_args()
    scale = 10 if options.quick else 1
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("LAKESTORE_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium: apt-get install -y chromium")
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "lakestore_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "quick": options.quick,
        "figures": {},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="lakestore-bench-ui-") as folder:
        store = f"{folder}/store"
        started = time.perf_counter()
        steps = 100_000 // scale
        ten = _log_long_runs(store, 10, 3, steps, "ten")
        (single,) = _log_long_runs(store, 1, 1, 10_000_000 // scale, "single")
        _log_many_runs(store, 10_000 // scale)
        lakestore.compact(store, grace=0)
        print(f"stores written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        server, url = _serve(store)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                drawn = "window.lakestore.ready && Object.keys(window.lakestore.charts).length"
                runs = "&".join(f"run={run_id}" for run_id in ten)
                views = [
                    (
                        "ten_runs",
                        f"10 runs x 3 metrics x {steps:,} steps, every run selected: "
                        "request to charts drawn",
                        f"{url}#/?experiment=ten&{runs}",
                        f"{drawn} === 3 && "
                        "window.lakestore.charts['train/loss'].runs.length === 10",
                        "< 1 s warm",
                    ),
                    (
                        "single_run",
                        f"1 run of {10_000_000 // scale:,} points, its run page: request to "
                        "chart drawn",
                        f"{url}#/run/{single}",
                        f"{drawn} === 1",
                        "< 1 s warm",
                    ),
                    (
                        "runs_table",
                        f"runs table of a {10_000 // scale:,}-run experiment: request to first "
                        "rows drawn",
                        f"{url}#/?experiment=big",
                        "document.querySelectorAll('#runs-table tbody tr').length > 0",
                        "< 1 s",
                    ),
                ]
                for name, what, address, ready, goal in views:
                    cold, warm = _time_view(browser, address, ready, options.repeats)
                    results["figures"][name] = {"cold_s": cold, "warm_s": warm}
                    rows.append((what, f"{cold:.3f} s", f"{warm:.3f} s", goal))
                weight, elsewhere = _page_weight(browser, url)
                results["figures"]["page_bytes"] = weight
                results["figures"]["external_requests"] = elsewhere
                rows.append(
                    (
                        "the page's own files (HTML, JS, CSS, uPlot), uncompressed",
                        f"{weight / 1024:.0f} KB",
                        f"{len(elsewhere)} external requests",
                        "< 300 KB, none",
                    )
                )
                if options.screenshots:
                    _screenshots(browser, url, ten, Path(options.screenshots))
                browser.close()
        finally:
            server.terminate()
            server.wait()
    print("# lakestore ui benchmark" + (" (quick)" if options.quick else ""))
    print(f"- Python {results['python']}, commit {results['lakestore_commit']}, "
          f"{os.cpu_count()} cores, headless Debian chromium")  # fmt: skip
    print("| view | first load | warm (median) | goal |")
    print("|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    Path(options.json).write_text(json.dumps(results, indent=2))
    print(f"results written to {options.json}")


def _screenshots(browser: Any, url: str, ten: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    runs = "&".join(f"run={run_id}" for run_id in ten[:4])
    page.goto(f"{url}#/?experiment=ten&{runs}")
    page.wait_for_function("window.lakestore.ready && Object.keys(window.lakestore.charts).length")
    page.screenshot(path=str(folder / "ui-runs.png"))
    page.goto(f"{url}#/compare?run={ten[0]}&run={ten[1]}")
    page.wait_for_selector("#compare-params")
    page.wait_for_function("Object.keys(window.lakestore.charts).length")
    page.screenshot(path=str(folder / "ui-compare.png"))
    page.close()


if __name__ == "__main__":
    main()
