"""A fresh process that searches a store as logging left it and reads one history, locally
and on a loopback S3 server (moto), with the S3 requests it sends.

Run it from the repository root (lakestore installed with its test extras, which bring
moto)::

    python benchmarks/bench_as_logged.py                 # 300 runs
    python benchmarks/bench_as_logged.py --runs 1000 --json out.json
    python benchmarks/bench_as_logged.py --runs 10000 --writers 4 --repeats 1

It logs RUNS runs (1 param, 100 ``log_metric`` calls each) to one experiment, in one
process or in WRITERS processes side by side, as a sweep would, letting writers merge on
their own; then, three times, it
times a fresh process that imports lakestore, connects, runs ``search_runs`` (top 10 by
``metrics.loss``) and reads one run's history, and counts the requests the S3 server
logged meanwhile. It prints a table and writes every sample as JSON (default: a file in
the temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

LOG = """
import sys, lakestore
uri, first, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + runs):
    with lakestore.start_run(store=uri, experiment="sweep") as run:
        run.log_param("lr", 0.001 * i)
        for step in range(100):
            run.log_metric("loss", 1.0 / (step + 1 + i), step=step)
"""

QUERY = """
import sys, time
t0 = time.perf_counter()
import lakestore
store = lakestore.connect(sys.argv[1])
store.connection.execute("SET enable_progress_bar = false")
t1 = time.perf_counter()
top = store.search_runs("params.lr > 0.01", order_by=["metrics.loss ASC"], max_results=10)
top = top.fetchall()
t2 = time.perf_counter()
history = store.metric_history(top[0][1], "loss").fetchall()
t3 = time.perf_counter()
assert len(top) == 10 and len(history) == 100, (len(top), len(history))
print(t1 - t0, t2 - t1, t3 - t2)
"""

_REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|HEAD|POST|DELETE) (\S*)')
"""A request in moto's log (its verbs may be coloured), and its path."""


def logging_requests(lines: list[str]) -> dict[str, int]:
    """The requests of a sweep: a writer's own (PUTs of inbox files, the store marker) and
    its merges' (listings, reads of inbox files and snapshots, parts and snapshots
    written, deletions)."""
    kinds: Counter[str] = Counter()
    for line in lines:
        if match := _REQUEST.search(line):
            verb, path = match.groups()
            own = (verb == "PUT" and "/inbox/" in path) or "_lakestore.json" in path
            kinds["write" if own else "merge"] += 1
    return dict(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--writers", type=int, default=1, help="logging processes, each a share of the runs"
    )
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "as_logged.json"))
    options = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    endpoint = None
    while endpoint is None:
        match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", server.stdout.readline())
        endpoint = match.group(1) if match else None
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(server.stdout), daemon=True).start()  # type: ignore[arg-type]
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem().mkdir("bench-as-logged")
    samples = []
    try:
        stores = {
            "local": os.path.join(tempfile.mkdtemp(), "store"),
            "s3": "s3://bench-as-logged/store",
        }
        for backend, uri in stores.items():
            before = len(log)
            started = time.perf_counter()
            share = -(-options.runs // options.writers)
            writers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        LOG,
                        uri,
                        str(first),
                        str(min(share, options.runs - first)),
                    ],
                    env=env,
                )
                for first in range(0, options.runs, share)
            ]
            if any(writer.wait() for writer in writers):
                raise RuntimeError("a logging process failed")
            logged = time.perf_counter() - started
            sweep = logging_requests(log[before:]) if backend == "s3" else None
            for _ in range(options.repeats):
                before = len(log)
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-c", QUERY, uri],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                total = time.perf_counter() - started
                connect, search, history = (float(x) for x in done.stdout.split())
                verbs = Counter(m.group(1) for line in log[before:] if (m := _REQUEST.search(line)))
                samples.append(
                    {
                        "backend": backend,
                        "runs": options.runs,
                        "log_s": logged,
                        "process_s": total,
                        "connect_s": connect,
                        "search_s": search,
                        "history_s": history,
                        "requests": dict(verbs) if backend == "s3" else None,
                        "logging_requests": sweep,
                    }
                )
    finally:
        server.kill()
    print("| backend | runs | process (median) | import+connect | search | history | S3 requests |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for backend in ("local", "s3"):
        rows = [s for s in samples if s["backend"] == backend]
        median = {
            k: statistics.median(s[k] for s in rows)
            for k in ("process_s", "connect_s", "search_s", "history_s")
        }
        requests = rows[-1]["requests"]
        shown = (
            f"{sum(requests.values())} "
            f"({', '.join(f'{verb} {count}' for verb, count in sorted(requests.items()))})"
            if requests
            else "-"
        )
        figures = f"{median['process_s']:.2f} s | {median['connect_s']:.2f} s"
        figures += f" | {median['search_s']:.2f} s | {median['history_s']:.3f} s"
        print(f"| {backend} | {options.runs:,} | {figures} | {shown} |")
    for row in samples[-1:]:
        if row["logging_requests"]:
            sweep = row["logging_requests"]
            total = sum(sweep.values())
            print(
                f"\nS3 requests of the sweep: {total:,} ({total / options.runs:.1f} a run): "
                f"{sweep.get('write', 0):,} written by the runs, {sweep.get('merge', 0):,} "
                f"by merges; logged in {row['log_s']:.0f} s"
            )
    with open(options.json, "w") as file:
        json.dump(samples, file, indent=1)
    print(f"samples: {options.json}")


if __name__ == "__main__":
    main()
