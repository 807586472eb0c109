"""Benchmark of three dashboards side by side: ``lakestore ui``, MLflow's UI, trackio's.

Same data for every tool, written for it: 10 runs x 3 metrics (``train/loss``,
``val/loss``, ``val/acc``) x N steps (``--steps``, default 10,000), all runs in one
experiment (MLflow) or project (trackio), one param ``lr`` a run. The values are the
curves of ``bench_ui.py`` (decay plus noise), computed once and handed to every tool.
Each tool logs with its own API:

- lakestore: ``run.log_metric_series`` in this process, into a store folder; measured
  twice, as logged and after ``lakestore.compact`` (on a copy of the store);
- MLflow: ``MlflowClient.log_batch`` (1,000 metrics a call) into a SQLite store, in a
  child process of MLflow's own venv (``--mlflow-python``, default /tmp/venv-mlflow);
- trackio: ``trackio.init`` / ``trackio.log({...}, step=...)`` / ``trackio.finish`` in a
  child process, ``TRACKIO_DIR`` in the temporary folder.

The number of points stored is checked for every tool before any page is loaded.

Then each tool's own server (``lakestore ui --refresh 3600``; ``mlflow ui`` with its
default workers unless ``--mlflow-workers``; ``trackio show --project``) serves the view
that draws one chart per metric with every run on it, in a headless Chromium (Debian's,
driven by playwright):

- lakestore: ``URL#/?experiment=E&run=ID...`` (every run selected); drawn when
  ``window.lakestore.ready`` and three charts built, ``train/loss`` with 10 runs (the
  page's own signal, as in ``bench_ui.py``);
- MLflow: the experiment's runs page in chart mode,
  ``URL#/experiments/ID/runs?compareRunsMode=CHART`` (MLflow shows the first 10 runs of
  an experiment, here all of them; opened from its list instead, an experiment without
  the ``mlflow.experimentKind`` tag lands on MLflow 3's GenAI overview). Its charts are
  plotly SVGs, made only once the metric histories have arrived; drawn when three
  ``.js-plotly-plot`` each have at least 10 traces whose ``path.js-line`` has a drawn
  segment (an ``L`` in its ``d``);
- trackio: its Metrics page, ``URL/?project=P`` (every run selected by default). Its charts
  are vega-embed on a canvas, created before vega draws on it; drawn when the
  ``.plot-container[data-metric=KEY]`` of each of the three keys holds a canvas with at
  least one coloured pixel (a line: axes, grid and text are grey or black), read with
  ``getImageData``. Vega draws a chart's whole scene in one pass, and trackio hands it
  every run's data at once (one ``get_logs_batch`` request), so one line drawn means all.

Timed: from ``page.goto`` to the condition true (playwright polls it every animation
frame). "First load": the first load after the server answers HTTP 200; "warm": the
median of ``--repeats`` loads after it. Every load is a new browser context (an empty
cache and local storage), so "warm" means the server's caches, not the browser's. One
more load, not timed, counts the requests made until drawn, the bytes of their response
bodies, any request leaving 127.0.0.1, and the points the page received a series. Each
server runs alone (the previous one stopped first); the load average is recorded at the
start and the end. ``HF_HUB_OFFLINE=1``, ``MLFLOW_DISABLE_TELEMETRY=true`` and
``DO_NOT_TRACK=1`` for the servers: nothing here needs the internet.

    python benchmarks/bench_ui_peers.py [--steps N] [--repeats R] [--json PATH]
        [--tools lakestore --tools mlflow ...] [--screenshots DIR]

Prints a Markdown table and writes JSON (default /tmp/bench_ui_peers.json). About 3
minutes with the defaults on 2 cores (MLflow's logging is most of it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

RUNS = 10
METRIC_NAMES = ["train/loss", "val/loss", "val/acc"]
EXPERIMENT = "ten"
TOOLS = ["lakestore", "lakestore_compacted", "mlflow", "trackio"]
LOAD_TIMEOUT_MS = 300_000
BIN = Path(sys.executable).parent

LAKESTORE_READY = (
    "() => window.lakestore && window.lakestore.ready && "
    "Object.keys(window.lakestore.charts).length === 3 && "
    f"(window.lakestore.charts['train/loss'] || {{runs: []}}).runs.length === {RUNS}"
)
MLFLOW_READY = f"""() => {{
  const plots = document.querySelectorAll('.js-plotly-plot');
  if (plots.length < 3) return false;
  let drawn = 0;
  for (const plot of plots) {{
    let lines = 0;
    for (const path of plot.querySelectorAll('.scatterlayer .trace path.js-line')) {{
      if ((path.getAttribute('d') || '').includes('L')) lines += 1;
    }}
    if (lines >= {RUNS}) drawn += 1;
  }}
  return drawn >= 3;
}}"""
TRACKIO_READY = f"""() => {{
  for (const key of {json.dumps(METRIC_NAMES)}) {{
    const canvas = document.querySelector(`.plot-container[data-metric="${{key}}"] canvas`);
    if (!canvas || !canvas.width || !canvas.height) return false;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let coloured = false;
    for (let i = 0; i < pixels.length; i += 4) {{
      const high = Math.max(pixels[i], pixels[i + 1], pixels[i + 2]);
      const low = Math.min(pixels[i], pixels[i + 1], pixels[i + 2]);
      if (pixels[i + 3] > 128 && high - low > 80) {{ coloured = true; break; }}
    }}
    if (!coloured) return false;
  }}
  return true;
}}"""
# After the first load, not timed: the page shows what it should.
LAKESTORE_CHECK = (
    "() => Object.keys(window.lakestore.charts).length === 3 && "
    f"{json.dumps(METRIC_NAMES)}.every(k => (window.lakestore.charts[k] || {{runs: []}})"
    f".runs.length === {RUNS})"
)
MLFLOW_CHECK = (
    "() => document.querySelectorAll('.js-plotly-plot').length === 3 && "
    f"{json.dumps(METRIC_NAMES)}.every(k => document.body.innerText.includes(k)) && "
    f"[...Array({RUNS}).keys()].every(i => document.body.innerText.includes('run' + i))"
)
TRACKIO_CHECK = (
    "() => document.querySelectorAll('.plot-container[data-metric]').length === 3 && "
    f"[...Array({RUNS}).keys()].every(i => document.body.innerText.includes('run' + i))"
)


def _values(steps: int) -> np.ndarray:
    """The curves of ``bench_ui.py``: shape (runs, metrics, steps)."""
    values = np.empty((RUNS, len(METRIC_NAMES), steps))
    for index in range(RUNS):
        rate = 1 + index / 3
        for metric in range(len(METRIC_NAMES)):
            noise = np.random.default_rng(index * 10 + metric).normal(0, 0.01, steps)
            decay = 1 / (1 + rate * np.arange(steps) * 10 / steps)
            values[index, metric] = (1 - decay if metric == 2 else decay * (1 + metric / 5)) + noise
    return values


def _lr(index: int) -> float:
    return 10.0 ** -(index % 4 + 1)


# Writing the stores ------------------------------------------------------------------------


def _log_lakestore(store: str, values: np.ndarray) -> list[str]:
    import lakestore

    ids = []
    for index in range(RUNS):
        with lakestore.start_run(store=store, experiment=EXPERIMENT, run_name=f"run{index}") as run:
            run.log_param("lr", _lr(index))
            for metric, name in enumerate(METRIC_NAMES):
                run.log_metric_series(name, values[index, metric])
        ids.append(run.run_id)
    stored = sum(
        lakestore.get_metric_history(run_id, name, store=store).to_arrow_table().num_rows
        for run_id in ids
        for name in METRIC_NAMES
    )
    if stored != values.size:
        raise RuntimeError(f"lakestore stored {stored:,} points, not {values.size:,}")
    return ids


def _child_mlflow(data: str, target: str) -> None:
    """In MLflow's venv: log the runs with ``log_batch``; print the experiment's id."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    values = np.load(data)["values"]
    client = MlflowClient(tracking_uri=target)
    experiment_id = client.create_experiment(EXPERIMENT)
    start_ms = int(time.time() * 1000)
    for index in range(values.shape[0]):
        run_id = client.create_run(experiment_id, run_name=f"run{index}").info.run_id
        client.log_batch(run_id, params=[Param("lr", str(_lr(index)))])
        batch: list[Metric] = []
        for metric, name in enumerate(METRIC_NAMES):
            for step, value in enumerate(values[index, metric].tolist()):
                batch.append(Metric(name, value, start_ms + step, step))
                if len(batch) == 1000:
                    client.log_batch(run_id, metrics=batch)
                    batch = []
        if batch:
            client.log_batch(run_id, metrics=batch)
        client.set_terminated(run_id)
    import mlflow

    print(json.dumps({"experiment_id": experiment_id, "version": mlflow.__version__}))


def _child_trackio(data: str, project: str) -> None:
    """With ``TRACKIO_DIR`` set: log the runs one ``trackio.log`` a step."""
    import trackio

    values = np.load(data)["values"]
    for index in range(values.shape[0]):
        trackio.init(project=project, name=f"run{index}", config={"lr": _lr(index)})
        columns = [values[index, metric].tolist() for metric in range(len(METRIC_NAMES))]
        for step in range(values.shape[2]):
            trackio.log(
                {name: columns[metric][step] for metric, name in enumerate(METRIC_NAMES)},
                step=step,
            )
        trackio.finish()
    print(json.dumps({"version": trackio.__version__}))


def _count_rows(database: Path, sql: str) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(sql).fetchone()[0])


def _child(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# Serving and loading -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    env.update(extra)
    return env


def _serve(
    command: list[str], env: dict[str, str], log: Path, ready: str
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start a server in its own process group; wait for the line ``ready`` (a regex whose
    group 1 is the URL) in its output, then for that URL to answer HTTP 200. Returns the
    process, the URL and the seconds from spawn to the 200."""
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            start_new_session=True,
        )
    url = None
    while time.perf_counter() - started < 300:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited:\n{log.read_text(errors='replace')[-3000:]}")
        if url is None:
            text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
            found = re.search(ready, text)
            url = found.group(1) if found else None
        if url is not None:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    if response.status == 200:
                        return process, url, time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.05)
    _stop(process)
    raise RuntimeError(
        f"{command[0]} not ready in 300 s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by ``_serve`` and every process it started (its group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):  # children outliving their parent (huey)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _load(browser: Any, url: str, ready: str) -> float | None:
    """Seconds from the request to ``ready`` true, in a new page (and context); None on a
    timeout."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        started = time.perf_counter()
        page.goto(url, timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function(ready, timeout=LOAD_TIMEOUT_MS)
        return time.perf_counter() - started
    except PlaywrightTimeout:
        return None
    finally:
        page.close()


def _inspect(
    browser: Any, url: str, ready: str, check: str, tool: str, screenshot: Path | None
) -> dict[str, Any]:
    """One more load, not timed: requests until drawn, their bytes, the ones leaving
    127.0.0.1, the points a series the page received, and ``check``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[Any] = []
    finished: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    page.on("requestfinished", lambda request: finished.append(request))
    try:
        page.goto(url, timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function(ready, timeout=LOAD_TIMEOUT_MS)
        drawn = True
    except PlaywrightTimeout:
        drawn = False
    # Only finished ones: a request that never finishes (MLflow's telemetry worker script,
    # as the page sees it) would make sizes() wait forever.
    requests, finished = list(requests), list(finished)
    found: dict[str, Any] = {"check": drawn and bool(page.evaluate(check))}
    sizes = 0
    for request in finished:
        with contextlib.suppress(Exception):  # a failed request: no size
            sizes += request.sizes()["responseBodySize"]
    found["requests"] = len(requests)
    found["response_bytes"] = sizes
    found["external_requests"] = [
        r.url for r in requests if not r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
    ]
    found["unfinished_requests"] = len(requests) - len(finished)
    found["points_per_series"] = _points(page, tool, finished) if drawn else None
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
    page.close()
    return found


def _points(page: Any, tool: str, finished: list[Any]) -> int | None:
    """The most points of one run's ``train/loss`` the page received."""
    if tool.startswith("lakestore"):
        return int(
            page.evaluate(
                "() => Math.max(...window.lakestore.charts['train/loss'].points"
                ".map(p => p.step.length))"
            )
        )
    most = None
    for request in finished:
        response = request.response()
        if response is None:
            continue
        counts: dict[str, int] = {}
        try:
            if tool == "mlflow" and "get-history-bulk-interval" in response.url:
                if "metric_key=train%2Floss" not in response.url:
                    continue
                for point in response.json().get("metrics", []):
                    counts[point["run_id"]] = counts.get(point["run_id"], 0) + 1
            elif tool == "trackio" and response.url.endswith("/api/get_logs_batch"):
                for entry in response.json()["data"]:
                    logs = entry.get("logs") or []
                    counts[str(entry.get("run_id"))] = sum("train/loss" in r for r in logs)
        except Exception:  # a body no longer available
            continue
        if counts:
            most = max(most or 0, *counts.values())
    return most


def _measure(
    browser: Any,
    tool: str,
    serve: tuple[list[str], dict[str, str], str],
    view: str,
    ready: str,
    check: str,
    folder: Path,
    options: argparse.Namespace,
) -> dict[str, Any]:
    command, env, ready_line = serve
    process, url, startup = _serve(command, env, folder / f"{tool}-server.log", ready_line)
    try:
        address = view.format(url=url.rstrip("/"))
        print(f"{tool}: server up in {startup:.1f} s, loading {address[:80]}...", file=sys.stderr)
        samples = [_load(browser, address, ready)]
        if samples[0] is not None:  # else the warm loads would time out too
            samples += [_load(browser, address, ready) for _ in range(options.repeats)]
        shot = Path(options.screenshots) / f"{tool}.png" if options.screenshots else None
        inspected = _inspect(browser, address, ready, check, tool, shot)
    finally:
        _stop(process)
    warm = [s for s in samples[1:] if s is not None]
    return {
        "url": address,
        "server_command": command,
        "startup_s": startup,
        "ready_condition": ready,
        "cold_s": samples[0],
        "warm_s": statistics.median(warm) if warm else None,
        "samples_s": samples,
        "timeouts": sum(s is None for s in samples),
        **inspected,
    }


# Main --------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.3f} s"


def _notes(tool: str, figures: dict[str, Any]) -> str:
    notes = []
    if tool == "lakestore_compacted":
        notes.append("store compacted (lakestore.compact) before serving")
    if tool == "mlflow":
        notes.append(f"mlflow ui, {figures['workers']} workers; plotly SVG")
    if tool == "trackio":
        notes.append("trackio show; vega canvas, its default smoothing (raw + smoothed line)")
    points = figures.get("points_per_series")
    notes.append(f"{points:,} points a series received" if points else "points: unknown")
    notes.append(f"server up in {figures['startup_s']:.1f} s")
    notes.append(
        f"{figures['requests']} requests, {figures['response_bytes'] / 1e6:.2f} MB until drawn"
    )
    external = figures["external_requests"]
    notes.append(f"{len(external)} external requests" + (f": {external[:3]}" if external else ""))
    if figures["timeouts"]:
        notes.append(f"{figures['timeouts']} loads timed out ({LOAD_TIMEOUT_MS // 1000} s)")
    if not figures["check"]:
        notes.append("CHECK FAILED: the page did not show 3 charts of the 10 runs")
    return "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="steps a metric (10,000)")
    parser.add_argument("--repeats", type=int, default=5, help="warm loads a tool (5)")
    parser.add_argument("--json", default="/tmp/bench_ui_peers.json")
    parser.add_argument("--tools", action="append", choices=TOOLS, help="default: all")
    parser.add_argument("--mlflow-python", default="/tmp/venv-mlflow/bin/python")
    parser.add_argument("--mlflow-workers", type=int, default=4, help="MLflow's default: 4")
    parser.add_argument("--screenshots", help="save a screenshot of each tool's view here")
    parser.add_argument("--child", choices=["mlflow", "trackio"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child == "mlflow":
        _child_mlflow(options.data, options.target)
        return
    if options.child == "trackio":
        _child_trackio(options.data, options.target)
        return
    run(options)


def run(options: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    import lakestore

    tools = options.tools or TOOLS
    chromium = os.environ.get("LAKESTORE_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium: apt-get install -y chromium")
    mlflow_bin = Path(options.mlflow_python).parent / "mlflow"
    if "mlflow" in tools and not mlflow_bin.exists():
        sys.exit(f"no MLflow at {mlflow_bin} (--mlflow-python)")
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "lakestore_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip(),
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "runs": RUNS,
        "metrics": METRIC_NAMES,
        "steps": options.steps,
        "repeats": options.repeats,
        "versions": {"lakestore": lakestore.__version__},
        "tools": {},
    }
    values = _values(options.steps)
    with tempfile.TemporaryDirectory(prefix="lakestore-bench-ui-peers-") as name:
        folder = Path(name)
        data = folder / "values.npz"
        np.savez(data, values=values)
        logged: dict[str, float] = {}
        servers: dict[str, tuple[list[str], dict[str, str], str]] = {}
        views: dict[str, tuple[str, str, str]] = {}
        lakestore_view = ""
        if "lakestore" in tools or "lakestore_compacted" in tools:
            started = time.perf_counter()
            ids = _log_lakestore(str(folder / "store"), values)
            logged["lakestore"] = time.perf_counter() - started
            runs = "&".join(f"run={run_id}" for run_id in ids)
            lakestore_view = f"{{url}}/#/?experiment={EXPERIMENT}&{runs}"
        for tool in ("lakestore", "lakestore_compacted"):
            if tool not in tools:
                continue
            store = folder / tool
            if tool == "lakestore_compacted":
                shutil.copytree(folder / "store", store)
                started = time.perf_counter()
                lakestore.compact(str(store), grace=0)
                logged[tool] = logged["lakestore"] + time.perf_counter() - started
            else:
                store = folder / "store"
            executable = BIN / "lakestore" if (BIN / "lakestore").exists() else "lakestore"
            servers[tool] = (
                [str(executable), "ui", "--store", str(store), "--port", str(_free_port()),
                 "--refresh", "3600"],
                _server_env({}),
                r"lakestore ui: (\S+)",
            )  # fmt: skip
            views[tool] = (lakestore_view, LAKESTORE_READY, LAKESTORE_CHECK)
        if "mlflow" in tools:
            database = folder / "mlflow.db"
            started = time.perf_counter()
            child = _child(
                [options.mlflow_python, __file__, "--child", "mlflow", "--data", str(data),
                 "--target", f"sqlite:///{database}"],
                folder,
            )  # fmt: skip
            logged["mlflow"] = time.perf_counter() - started
            results["versions"]["mlflow"] = child["version"]
            stored = _count_rows(database, "SELECT COUNT(*) FROM metrics")
            if stored != values.size:
                raise RuntimeError(f"MLflow stored {stored:,} points, not {values.size:,}")
            servers["mlflow"] = (
                [str(mlflow_bin), "ui", "--backend-store-uri", f"sqlite:///{database}",
                 "--default-artifact-root", str(folder / "mlartifacts"),
                 "--host", "127.0.0.1", "--port", str(_free_port()),
                 "--workers", str(options.mlflow_workers)],
                _server_env({}),
                r"Uvicorn running on (http://\S+)",
            )  # fmt: skip
            views["mlflow"] = (
                f"{{url}}/#/experiments/{child['experiment_id']}/runs?compareRunsMode=CHART",
                MLFLOW_READY,
                MLFLOW_CHECK,
            )
        if "trackio" in tools:
            trackio_dir = folder / "trackio"
            env = _server_env({"TRACKIO_DIR": str(trackio_dir)})
            started = time.perf_counter()
            child = _child(
                [sys.executable, __file__, "--child", "trackio", "--data", str(data),
                 "--target", EXPERIMENT],
                folder,
                env,
            )  # fmt: skip
            logged["trackio"] = time.perf_counter() - started
            results["versions"]["trackio"] = child["version"]
            rows = _count_rows(trackio_dir / f"{EXPERIMENT}.db", "SELECT COUNT(*) FROM metrics")
            if rows * len(METRIC_NAMES) != values.size:
                raise RuntimeError(f"trackio stored {rows:,} rows, not {RUNS * options.steps:,}")
            port = _free_port()
            servers["trackio"] = (
                [str(BIN / "trackio"), "show", "--project", EXPERIMENT],
                # its port: GRADIO_SERVER_PORT; no browser opened (BROWSER: a no-op)
                _server_env({"TRACKIO_DIR": str(trackio_dir), "GRADIO_SERVER_PORT": str(port),
                             "BROWSER": "true"}),
                r"launched at: (http://[^\s?]+)",
            )  # fmt: skip
            views["trackio"] = (f"{{url}}/?project={EXPERIMENT}", TRACKIO_READY, TRACKIO_CHECK)
        for tool, seconds in logged.items():
            print(f"{tool}: stores written in {seconds:.0f} s", file=sys.stderr)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            results["chromium"] = browser.version
            for tool in tools:
                view, ready, check = views[tool]
                figures = _measure(
                    browser, tool, servers[tool], view, ready, check, folder, options
                )
                figures["log_s"] = logged[tool]
                if tool == "mlflow":
                    figures["workers"] = options.mlflow_workers
                results["tools"][tool] = figures
            browser.close()
    results["load_average_end"] = os.getloadavg()
    _report(results, options)


WHAT = {
    "lakestore": "`lakestore ui` on the store as logged, the runs view, every run selected: "
    "request to `window.lakestore.ready` with 3 charts of 10 runs",
    "lakestore_compacted": "the same, on the store after `lakestore.compact`",
    "mlflow": "`mlflow ui`, experiment runs page in chart mode: request to 3 plotly charts "
    "with >= 10 drawn lines each",
    "trackio": "`trackio show`, Metrics page: request to the 3 metric canvases holding a "
    "drawn line (a coloured pixel)",
}


def _report(results: dict[str, Any], options: argparse.Namespace) -> None:
    start, end = results["load_average_start"], results["load_average_end"]
    versions = ", ".join(f"{tool} {version}" for tool, version in results["versions"].items())
    print(f"# Dashboards side by side: {RUNS} runs x 3 metrics x {options.steps:,} steps")
    print(
        f"- Python {results['python']}, commit {results['lakestore_commit']}, "
        f"{results['cores']} cores, headless Debian chromium {results.get('chromium', '')}"
    )
    print(f"- {versions}")
    print(
        f"- load average (1, 5, 15 min): {start[0]:.2f} {start[1]:.2f} {start[2]:.2f} at the "
        f"start, {end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end"
    )
    print(f"| tool | what was measured | first load | warm (median of {options.repeats}) | notes |")
    print("|---|---|---:|---:|---|")
    for tool, figures in results["tools"].items():
        cells = [
            tool,
            WHAT[tool],
            _seconds(figures["cold_s"]),
            _seconds(figures["warm_s"]),
            _notes(tool, figures),
        ]
        print("| " + " | ".join(cells) + " |")
    Path(options.json).write_text(json.dumps(results, indent=2))
    print(f"results written to {options.json}")


if __name__ == "__main__":
    main()
