"""Benchmark of the spool: logging throughput with and without it, with the S3 store up and down.

Run it from the repository root, with the test extras installed (the S3 server is moto's:
``pip install -e '.[test]'``)::

    python benchmarks/bench_spool.py            # 5 repeats, 3M calls, a 30 s outage
    python benchmarks/bench_spool.py --quick    # 2 repeats, 1M calls, a 5 s outage
    python benchmarks/bench_spool.py --json out.json
    python benchmarks/bench_spool.py --scenario down_spool_on --repeats 3 --flush-rows 1000000

It prints machine information and a Markdown table to stdout (progress goes to stderr) and
writes the same figures, with every raw sample, the machine information and the command
line, as JSON (default: ``bench_spool.json`` in the temporary folder).

The benchmark starts moto's S3 server (``python -m moto.server -H 127.0.0.1 -p 0``) for the
whole run. Each repeat of each scenario is a fresh Python process with a bucket of its own
and its own spool dir (``$LAKESTORE_SPOOL_DIR``, under ``tempfile``); it reaches the server
through ``tests/tcp_proxy.py``. The outage is real: the child kills the proxy (connections
are refused, as by a server that is down) and starts it again on the same port, while the
server keeps what it was sent. The scenarios of one repeat run one after the other, then the
next repeat; the table shows medians over the repeats, and ratios against scenario 1 of the
same run (above 1 is slower).

The training loop is ``run.log_metric("loss", 0.25, step=i)`` in chunks of 1,000 calls whose
end times are recorded: the longest chunk is the longest the loop stood still. Writer
options: ``flush_interval=0.5`` (flushes happen during the loop) and ``flush_rows=250,000``
(100,000 with ``--quick``), below the default of 1,000,000 so that the back-pressure bound
(``BACKPRESSURE_FACTOR`` x ``flush_rows`` = 2M rows waiting) falls inside the loop of
scenario 4. Storage options fail fast: ``{"config_kwargs": {"retries": {"max_attempts": 1},
"connect_timeout": 2}, "endpoint_url": <proxy>}`` (the endpoint is passed, not taken from the
environment, because fsspec caches filesystems by their options).

``up_spool_on``
    1. Store up, spool on (the default): N calls (3M, 1M with ``--quick``), then
    ``run.end()``. Loop time, ns per call, calls/s, and the total until ``run.end()``
    returns.
``up_spool_off``
    2. The same with the spool off. ``start_run`` has no parameter for it, so the child
    replaces ``WriterOptions.from_environment`` (which ``start_run`` calls) with a wrapper
    returning the same options with ``spool=False``, and checks that the writer has no
    spool. Nothing else changes.
``down_spool_on``
    3. Spool on; the proxy is killed once ``start_run`` has returned and started again after
    the loop: the whole loop runs during the outage. Loop time, then the time from the
    proxy listening again until ``run.end()`` returns with every file uploaded.
``down_spool_off``
    4. As 3, spool off. The loop runs in a thread; the main thread waits up to a deadline
    (3 times the median loop time of scenario 1 so far, at least 5 s), notes how many calls
    had returned and when the loop last made progress, starts the proxy again, waits for the
    loop and ends the run.
``outage_mid_run``
    5. Spool on; the loop runs for 5 s with the store up, 30 s with it down and 10 s up again
    (2, 5 and 3 s with ``--quick``), the proxy killed and restarted by another thread. Calls/s
    in each phase, the longest chunk, and when the spooled files reached the store.
``down_spool_on_default_retries``
    6. As 3, once per run (not repeated), with storage options ``{"endpoint_url": <proxy>}``
    alone: botocore's and s3fs's default retries, as a user gets them.
``hung_spool_on``
    7. As 4 with the spool on, once per run, but the proxy is stopped (SIGSTOP) instead of
    killed: connections are accepted and requests never answered, as by a hung server or
    a network that drops packets; SIGCONT ends the outage.

What the writer did is seen through wrappers that time and count, then call the originals:
``Spool.put`` (bytes spooled), ``Spool.upload`` (when each spooled file reached the store),
``FsspecStorage.put_file`` (how long a failed upload attempt took) and
``FileSink.wait_for_room_locked`` (how long logging calls waited for room under the
back-pressure bound); a logging handler counts the "lakestore" warnings and keeps them off
stderr.

After every child, the metric rows in the store are counted through ``lakestore.connect``:
``count(*)`` and ``count(DISTINCT step)`` must both be the number of calls, steps 0 to N - 1,
the run FINISHED and the spool empty; any other outcome is reported as a failed check and the
exit code is 1. The bucket is then deleted. The load average is recorded with every sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench_write import (
    Results,
    fmt_seconds,
    load_average,
    machine_info,
    machine_markdown,
    progress,
    run_script_child,
    scenario_parser,
    write_report,
)

from lakestore.writer import BACKPRESSURE_FACTOR

HERE = Path(__file__).resolve().parent
PROXY_SCRIPT = HERE.parent / "tests" / "tcp_proxy.py"
DEFAULT_JSON = Path(tempfile.gettempdir()) / "bench_spool.json"
CHILD = "_child"
CHILD_TIMEOUT = 900.0

CALLS = 3_000_000
CALLS_QUICK = 1_000_000
FLUSH_ROWS = 250_000
FLUSH_ROWS_QUICK = 100_000
FLUSH_INTERVAL = 0.5
CHUNK = 1_000
OUTAGE_PHASES = (5.0, 30.0, 10.0)  # seconds up, down, up again
OUTAGE_PHASES_QUICK = (2.0, 5.0, 3.0)
DEADLINE_FACTOR = 3.0
DEADLINE_MIN = 5.0

FAIL_FAST = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lakestore-bench",
    "AWS_SECRET_ACCESS_KEY": "lakestore-bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}

SCENARIOS = {
    "up_spool_on": "1. store up, spool on (default)",
    "up_spool_off": "2. store up, spool off",
    "down_spool_on": "3. store down during the loop, spool on",
    "down_spool_off": "4. store down during the loop, spool off",
    "outage_mid_run": "5. store down {down:g} s mid-run, spool on",
    "down_spool_on_default_retries": "6. as 3, default botocore/s3fs retries (1 run)",
    "hung_spool_on": "7. store hanging during the loop, spool on (1 run)",
}
ONCE = ("down_spool_on_default_retries", "hung_spool_on")


# -- children: each scenario runs in a fresh interpreter and returns its figures -----------


def _now() -> int:
    return time.perf_counter_ns()


def _seconds(start: int, end: int) -> float:
    return (end - start) / 1e9


class Proxy:
    """tests/tcp_proxy.py in front of the S3 server: killing it is the outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def up(self) -> int:
        """Start the proxy (on the same port as before, if any); when it listens (ns)."""
        self.process = subprocess.Popen(
            [sys.executable, str(PROXY_SCRIPT), str(self.port), str(self.target_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        listening = _now()
        if not line:
            raise RuntimeError(f"the proxy did not start on port {self.port}")
        self.port = int(line.split()[-1])
        return listening

    def down(self) -> int:
        """Kill the proxy; when it is gone (ns)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None
        return _now()

    def hang(self) -> int:
        """Stop the proxy (SIGSTOP): connections are accepted, requests never answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        return _now()

    def resume(self) -> int:
        """Let a stopped proxy go on (SIGCONT): it forwards what waited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        return _now()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Watch:
    """What a child observes besides its own timing, by wrappers that call the originals.

    ``Spool.put`` and ``Spool.upload``: bytes spooled, and when each spooled file reached
    the store. ``FsspecStorage.put_file``: how long each failed upload attempt took.
    ``FileSink.wait_for_room_locked``: how long logging calls waited for room (the
    back-pressure bound). A logging handler counts the warnings of the "lakestore" logger
    (and keeps them off stderr).
    """

    def __init__(self) -> None:
        from lakestore.spool import Spool
        from lakestore.storage import FsspecStorage
        from lakestore.writer import FileSink

        self.spooled_bytes: list[int] = []
        self.uploaded_at: list[int] = []
        self.failed_puts: list[float] = []
        self.waits: list[tuple[int, float]] = []  # (when, seconds) of each wait for room
        self.warnings: list[str] = []
        put, upload = Spool.put, Spool.upload
        put_file, wait = FsspecStorage.put_file, FileSink.wait_for_room_locked

        def counted_put(spool: Spool, relative: str, data: bytes) -> None:
            put(spool, relative, data)
            self.spooled_bytes.append(len(data))

        def timed_upload(spool: Spool, storage: Any, relative: str) -> None:
            upload(spool, storage, relative)
            self.uploaded_at.append(_now())

        def timed_put_file(storage: FsspecStorage, *args: Any, **kwargs: Any) -> bool:
            start = _now()
            try:
                return put_file(storage, *args, **kwargs)
            except Exception:
                self.failed_puts.append(_seconds(start, _now()))
                raise

        def timed_wait(sink: FileSink) -> None:
            start = _now()
            wait(sink)
            waited = _seconds(start, _now())
            if waited > 0.0005:  # a call that found room returns in microseconds
                self.waits.append((start, waited))

        Spool.put = counted_put  # type: ignore[method-assign]
        Spool.upload = timed_upload  # type: ignore[method-assign]
        FsspecStorage.put_file = timed_put_file  # type: ignore[method-assign]
        FileSink.wait_for_room_locked = timed_wait  # type: ignore[method-assign]
        watch = self

        class Counter(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                watch.warnings.append(record.getMessage()[:300])

        logging.getLogger("lakestore").addHandler(Counter(logging.WARNING))

    def blocked(self, start: int, end: int) -> tuple[float, float]:
        """Seconds logging waited for room between ``start`` and ``end``: total, longest."""
        waits = [waited for when, waited in self.waits if start <= when < end]
        return sum(waits), max(waits, default=0.0)

    def figures(self) -> dict[str, Any]:
        return {
            "spooled_files": len(self.spooled_bytes),
            "spooled_bytes": sum(self.spooled_bytes),
            "spool_uploads": len(self.uploaded_at),
            "failed_upload_attempts": len(self.failed_puts),
            "failed_upload_attempt_s": self.failed_puts,
            "blocked_s": sum(waited for _, waited in self.waits),
            "longest_block_s": max((waited for _, waited in self.waits), default=0.0),
            "blocks": len(self.waits),
            "warnings": len(self.warnings),
            "first_warnings": self.warnings[:3],
        }


class Child:
    """One scenario's run: the store behind its proxy, its options, what it observed."""

    def __init__(self, spec: dict[str, Any], proxy: Proxy, uri: str, watch: Watch) -> None:
        self.spec = spec
        self.proxy = proxy
        self.uri = uri
        self.watch = watch
        self.calls: int = spec["calls"]

    def options(self) -> dict[str, Any]:
        if self.spec.get("default_retries"):
            return {"endpoint_url": self.proxy.endpoint}
        return {**FAIL_FAST, "endpoint_url": self.proxy.endpoint}

    def start_run(self, *, spool: bool) -> Any:
        import lakestore

        if not spool:
            _turn_spool_off()
        run = lakestore.start_run(
            store=self.uri,
            storage_options=self.options(),
            flush_interval=FLUSH_INTERVAL,
            flush_rows=self.spec["flush_rows"],
        )
        has_spool = run._writer._sink._spool is not None
        if has_spool != spool:
            raise RuntimeError(f"the writer has spool={has_spool}, the scenario wants {spool}")
        return run


def _turn_spool_off() -> None:
    """Make start_run build its writer options with ``spool=False`` (this process only)."""
    from lakestore.writer import WriterOptions

    original = WriterOptions.from_environment

    def without_spool(
        cls: type[WriterOptions], flush_interval: float | None = None, flush_rows: int | None = None
    ) -> WriterOptions:
        return original(flush_interval, flush_rows)._replace(spool=False)

    WriterOptions.from_environment = classmethod(without_spool)  # type: ignore[assignment,method-assign]


def _log_loop(run: Any, calls: int, marks: list[int]) -> None:
    """The training loop: ``calls`` log_metric calls; the end time of each 1,000 in ``marks``."""
    v = 0.25
    for start in range(0, calls, CHUNK):
        for i in range(start, min(start + CHUNK, calls)):
            run.log_metric("loss", v, step=i)
        marks.append(time.perf_counter_ns())


def _longest_chunk(start: int, marks: list[int]) -> float:
    """Seconds of the slowest chunk of 1,000 calls (0 if none)."""
    return max((_seconds(a, b) for a, b in zip([start, *marks], marks, strict=False)), default=0)


def child_up(child: Child, *, spool: bool) -> dict[str, Any]:
    run = child.start_run(spool=spool)
    marks: list[int] = []
    start = _now()
    _log_loop(run, child.calls, marks)
    looped = _now()
    run.end()
    ended = _now()
    return {
        "loop_s": _seconds(start, looped),
        "longest_chunk_s": _longest_chunk(start, marks),
        "end_s": _seconds(looped, ended),
        "total_s": _seconds(start, ended),
    }


def child_down_spool_on(child: Child) -> dict[str, Any]:
    run = child.start_run(spool=True)
    child.proxy.down()
    marks: list[int] = []
    start = _now()
    _log_loop(run, child.calls, marks)
    looped = restarted = _now()
    listening = child.proxy.up()
    run.end()
    ended = _now()
    return {
        "loop_s": _seconds(start, looped),
        "longest_chunk_s": _longest_chunk(start, marks),
        "proxy_start_s": _seconds(restarted, listening),
        "back_to_end_s": _seconds(listening, ended),
        "total_s": _seconds(start, ended),
    }


def child_down_spool_off(child: Child) -> dict[str, Any]:
    return _loop_until_deadline(child, spool=False, hang=False)


def child_hung_spool_on(child: Child) -> dict[str, Any]:
    return _loop_until_deadline(child, spool=True, hang=True)


def _loop_until_deadline(child: Child, *, spool: bool, hang: bool) -> dict[str, Any]:
    """The loop in a thread while the store is down (or hangs), up to a deadline; then the
    store comes back, the loop finishes and the run ends."""
    run = child.start_run(spool=spool)
    if hang:
        child.proxy.hang()
    else:
        child.proxy.down()
    marks: list[int] = []
    loop = threading.Thread(target=_log_loop, args=(run, child.calls, marks), daemon=True)
    start = _now()
    loop.start()
    loop.join(child.spec["deadline_s"])
    at_deadline = _now()
    done = len(marks)  # chunks finished by the deadline
    finished = not loop.is_alive()
    last_progress = marks[done - 1] if done else start
    listening = child.proxy.resume() if hang else child.proxy.up()
    loop.join()
    looped = _now()
    run.end()
    ended = _now()
    return {
        "deadline_s": child.spec["deadline_s"],
        "finished_before_deadline": finished,
        "calls_by_deadline": min(done * CHUNK, child.calls),
        "last_progress_s": _seconds(start, last_progress),
        "stalled_at_deadline_s": _seconds(last_progress, at_deadline),
        "longest_chunk_s": _longest_chunk(start, marks),
        "loop_s": _seconds(start, looped),
        "back_to_loop_done_s": _seconds(listening, looped),
        "back_to_end_s": _seconds(listening, ended),
    }


def child_outage_mid_run(child: Child) -> dict[str, Any]:
    before, down, after = child.spec["phases"]
    run = child.start_run(spool=True)
    stop = threading.Event()
    times: dict[str, int] = {}
    start = _now()

    def outage() -> None:
        try:
            time.sleep(before)
            times["down"] = child.proxy.down()
            time.sleep(max(0.0, before + down - _seconds(start, _now())))
            times["up"] = child.proxy.up()
            time.sleep(after)
        finally:
            stop.set()  # the loop ends even if the proxy failed to start again

    controller = threading.Thread(target=outage, daemon=True)
    controller.start()
    marks: list[int] = []
    v = 0.25
    step = 0
    while not stop.is_set():
        for i in range(step, step + CHUNK):
            run.log_metric("loss", v, step=i)
        step += CHUNK
        marks.append(time.perf_counter_ns())
    looped = _now()
    controller.join()
    run.end()
    ended = _now()
    child.calls = step

    bounds = {
        "before": (start, times["down"]),
        "during": (times["down"], times["up"]),
        "after": (times["up"], looped),
    }
    figures: dict[str, Any] = {"calls": step, "loop_s": _seconds(start, looped)}
    chunk_starts = [start, *marks[:-1]]
    for phase, (low, high) in bounds.items():
        inside = [(a, b) for a, b in zip(chunk_starts, marks, strict=True) if low <= b <= high]
        figures[f"{phase}_s"] = _seconds(low, high)
        figures[f"{phase}_calls_per_s"] = len(inside) * CHUNK / _seconds(low, high)
        figures[f"{phase}_longest_chunk_s"] = max((_seconds(a, b) for a, b in inside), default=0)
        figures[f"{phase}_blocked_s"], figures[f"{phase}_longest_block_s"] = child.watch.blocked(
            low, high
        )
    uploads = [t for t in child.watch.uploaded_at if t >= times["up"]]
    figures["back_to_first_upload_s"] = _seconds(times["up"], uploads[0]) if uploads else None
    figures["back_to_spool_empty_s"] = _seconds(times["up"], uploads[-1]) if uploads else None
    figures["end_s"] = _seconds(looped, ended)
    # Calls per second of the loop in each whole second from its start, for the record.
    per_second: list[int] = []
    for mark in marks:
        second = int(_seconds(start, mark))
        per_second.extend([0] * (second + 1 - len(per_second)))
        per_second[second] += CHUNK
    figures["calls_each_second"] = per_second
    figures["down_at_s"] = _seconds(start, times["down"])
    figures["up_at_s"] = _seconds(start, times["up"])
    return figures


CHILDREN = {
    "up_spool_on": lambda child: child_up(child, spool=True),
    "up_spool_off": lambda child: child_up(child, spool=False),
    "down_spool_on": child_down_spool_on,
    "down_spool_off": child_down_spool_off,
    "outage_mid_run": child_outage_mid_run,
    "down_spool_on_default_retries": child_down_spool_on,
    "hung_spool_on": child_hung_spool_on,
}


def _check_store(child: Child) -> dict[str, Any]:
    """Count what reached the store; ``check_ok`` says if it is exactly what was logged."""
    import lakestore
    from lakestore.spool import Spool

    with lakestore.connect(child.uri, storage_options=child.options()) as store:
        rows, distinct, low, high = store.sql(
            "SELECT count(*), count(DISTINCT step), min(step), max(step) FROM metrics"
        ).fetchall()[0]
        statuses = [status for (status,) in store.sql("SELECT status FROM runs").fetchall()]
    left = len(Spool(child.uri).pending())
    n = child.calls
    ok = rows == distinct == n and low == 0 and high == n - 1
    ok = ok and statuses == ["FINISHED"] and left == 0
    return {
        "calls": n,
        "rows": rows,
        "distinct_steps": distinct,
        "min_step": low,
        "max_step": high,
        "run_statuses": statuses,
        "left_in_spool": left,
        "check_ok": ok,
    }


def child_main(spec_text: str) -> None:
    import s3fs

    spec = json.loads(spec_text)
    load = load_average()
    watch = Watch()
    direct = s3fs.S3FileSystem(endpoint_url=spec["s3"])
    bucket = f"bench-{uuid.uuid4().hex[:16]}"
    direct.mkdir(bucket)
    proxy = Proxy(int(spec["s3"].rsplit(":", 1)[1]))
    proxy.up()
    child = Child(spec, proxy, f"s3://{bucket}/store", watch)
    try:
        result = CHILDREN[spec["scenario"]](child)
        result.update(_check_store(child))
    finally:
        if proxy.process is not None:
            proxy.down()
        direct.rm(bucket, recursive=True)
    result.update(watch.figures())
    result["load_average"] = load
    print(json.dumps(result))


# -- parent: the S3 server and the children ---------------------------------------------


def start_s3_server() -> tuple[subprocess.Popen[str], str]:
    """moto's S3 server on a free loopback port; the process and its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line and server.poll() is not None:
            break
        match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
        if match:
            # Keep reading its log so that the pipe never fills up and blocks the server.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, match.group(1)
    server.kill()
    raise SystemExit("the moto S3 server did not start: pip install -e '.[test]'")


def _child_env(spool_dir: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAKESTORE_", "AWS_"))
    }
    env.update(S3_CREDENTIALS)
    env["LAKESTORE_SPOOL_DIR"] = spool_dir
    return env


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter with its own spool dir (removed after)."""
    folder = tempfile.mkdtemp(prefix="lakestore-bench-spool-")
    try:
        env = _child_env(os.path.join(folder, "spool"))
        script = str(Path(__file__).resolve())
        return run_script_child(script, spec, env, folder, spec["scenario"], CHILD_TIMEOUT)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- parent: running the scenarios and reporting ------------------------------------------


def fmt_calls(calls: float) -> str:
    return f"{calls / 1e6:.2f}M"


def fmt_rate(per_second: float) -> str:
    return f"{per_second / 1e6:.2f} M calls/s"


def fmt_mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def median(samples: list[dict[str, Any]], key: str) -> float:
    values = [sample[key] for sample in samples if sample.get(key) is not None]
    return statistics.median(values) if values else float("nan")


class Bench:
    """Runs the children of every scenario and turns their samples into the table."""

    def __init__(self, s3: str, args: argparse.Namespace, repeats: int) -> None:
        self.s3 = s3
        self.quick = args.quick
        self.repeats = repeats
        self.scenarios = [name for name in SCENARIOS if name in (args.scenario or SCENARIOS)]
        self.calls = args.calls or (CALLS_QUICK if args.quick else CALLS)
        self.flush_rows = args.flush_rows or (FLUSH_ROWS_QUICK if args.quick else FLUSH_ROWS)
        self.phases = OUTAGE_PHASES_QUICK if args.quick else OUTAGE_PHASES
        self.samples: dict[str, list[dict[str, Any]]] = {name: [] for name in self.scenarios}
        self.results = Results()

    def spec(self, scenario: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "scenario": scenario,
            "s3": self.s3,
            "calls": self.calls,
            "flush_rows": self.flush_rows,
            "phases": self.phases,
            "default_retries": scenario == "down_spool_on_default_retries",
        }
        if scenario in ("down_spool_off", "hung_spool_on"):
            up = self.samples.get("up_spool_on") or []
            reference = median(up, "loop_s") if up else DEADLINE_MIN
            spec["deadline_s"] = max(DEADLINE_MIN, DEADLINE_FACTOR * reference)
        return spec

    def run(self) -> None:
        for repeat in range(self.repeats):
            for scenario in self.scenarios:
                if scenario not in ONCE or repeat == 0:
                    progress(f"{scenario}: repeat {repeat + 1}/{self.repeats}")
                    sample = run_child(self.spec(scenario))
                    self.samples[scenario].append(sample)
                    if not sample["check_ok"]:
                        self.results.failures.append(
                            f"{scenario}: logged {sample['calls']:,} points, the store holds "
                            f"{sample['rows']:,} rows, {sample['distinct_steps']:,} distinct "
                            f"steps {sample['min_step']}..{sample['max_step']}, runs "
                            f"{sample['run_statuses']}, {sample['left_in_spool']} file(s) left "
                            "in the spool"
                        )

    # -- the table -----------------------------------------------------------------------

    def label(self, scenario: str) -> str:
        return SCENARIOS[scenario].format(down=self.phases[1])

    def reference(self, key: str) -> float | None:
        up = self.samples.get("up_spool_on")
        return median(up, key) if up else None

    def ratio(self, value: float, key: str) -> float | None:
        reference = self.reference(key)
        return value / reference if reference else None

    def table(self) -> Results:
        for scenario in self.scenarios:
            samples = self.samples[scenario]
            if samples:
                getattr(self, f"rows_{scenario}", self.rows_loop)(scenario, samples)
        return self.results

    def add(self, scenario: str, *args: Any, **kwargs: Any) -> None:
        self.results.add(self.label(scenario), *args, **kwargs)

    def add_loop(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        loop = median(samples, "loop_s")
        per_call = loop / self.calls * 1e9
        ratio = self.ratio(loop, "loop_s")
        add = self.add
        add(
            scenario,
            f"loop of {fmt_calls(self.calls)} log_metric calls",
            loop,
            "s",
            fmt_seconds(loop),
            ratio=ratio,
        )
        add(
            scenario,
            "cost per call, logging thread",
            per_call,
            "ns",
            f"{per_call:.0f} ns",
            ratio=ratio,
        )
        add(scenario, "calls/s", self.calls / loop, "1/s", fmt_rate(self.calls / loop))
        stall = median(samples, "longest_chunk_s")
        add(
            scenario,
            "longest 1,000 calls (a stall)",
            stall,
            "s",
            fmt_seconds(stall),
            ratio=self.ratio(stall, "longest_chunk_s"),
        )
        self.add_blocked(scenario, samples, goal=True)

    def add_blocked(self, scenario: str, samples: list[dict[str, Any]], *, goal: bool) -> None:
        total = median(samples, "blocked_s")
        longest = max(sample["longest_block_s"] for sample in samples)
        blocked = sum(sample["blocked_s"] > 0 for sample in samples)
        text = "never"
        if blocked:
            text = (
                f"{fmt_seconds(total)} in all (median); in {blocked} of {len(samples)} runs, "
                f"longest wait {fmt_seconds(longest)}"
            )
        self.add(
            scenario,
            "logging calls waiting for room (back-pressure)",
            total,
            "s",
            text,
            "never" if goal else "",
            not blocked if goal else None,
        )

    def add_failed_attempts(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        attempts = [took for sample in samples for took in sample["failed_upload_attempt_s"]]
        if attempts:
            took = statistics.median(attempts)
            self.add(
                scenario,
                "one failed upload attempt (writer's flush thread)",
                took,
                "s",
                f"{fmt_seconds(took)} (median of {len(attempts)})",
            )

    def add_rows(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        counts = sorted({sample["rows"] for sample in samples})
        exact = all(sample["check_ok"] for sample in samples)
        calls = sorted({sample["calls"] for sample in samples})
        text = f"{counts[0]:,}" if len(counts) == 1 else " / ".join(f"{c:,}" for c in counts)
        self.add(
            scenario,
            "metric rows in the store (= distinct steps)",
            counts[0],
            "rows",
            text,
            f"= calls ({' / '.join(f'{c:,}' for c in calls)})",
            exact,
        )

    def add_spooled(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        size, files = median(samples, "spooled_bytes"), median(samples, "spooled_files")
        self.add(
            scenario,
            "written to the spool (then uploaded)",
            size,
            "bytes",
            f"{files:.0f} files, {fmt_mib(size)}",
        )

    def rows_loop(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        self.add_loop(scenario, samples)
        end, total = median(samples, "end_s"), median(samples, "total_s")
        self.add(
            scenario,
            "run.end() after the loop",
            end,
            "s",
            fmt_seconds(end),
            ratio=self.ratio(end, "end_s"),
        )
        self.add(
            scenario,
            "total, loop + run.end()",
            total,
            "s",
            fmt_seconds(total),
            ratio=self.ratio(total, "total_s"),
        )
        self.add_rows(scenario, samples)

    def add_back_to_end(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        """The time from the store's return until run.end() returned with all uploaded."""
        back = median(samples, "back_to_end_s")
        self.add(
            scenario,
            "store back → run.end() returned, all uploaded",
            back,
            "s",
            fmt_seconds(back),
            ratio=self.ratio(back, "end_s"),
        )

    def rows_down_spool_on(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        self.add_loop(scenario, samples)
        self.add_failed_attempts(scenario, samples)
        self.add_spooled(scenario, samples)
        self.add_back_to_end(scenario, samples)
        self.add_rows(scenario, samples)

    rows_down_spool_on_default_retries = rows_down_spool_on

    def rows_down_spool_off(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        add = self.add
        deadline = median(samples, "deadline_s")
        blocked = [sample for sample in samples if not sample["finished_before_deadline"]]
        if blocked:
            calls, at = median(blocked, "calls_by_deadline"), median(blocked, "last_progress_s")
            text = (
                f"blocked in {len(blocked)} of {len(samples)}: after {fmt_calls(calls)} of "
                f"{fmt_calls(self.calls)} calls, {fmt_seconds(at)} into the loop"
            )
        else:
            calls = self.calls
            text = f"never blocked: all {fmt_calls(self.calls)} calls before the deadline"
        add(scenario, f"loop during the outage (deadline {deadline:.1f} s)", calls, "calls", text)
        stall = median(samples, "longest_chunk_s")
        add(
            scenario,
            "longest 1,000 calls (a stall: until the store is back)",
            stall,
            "s",
            fmt_seconds(stall),
        )
        self.add_blocked(scenario, samples, goal=scenario != "down_spool_off")
        self.add_failed_attempts(scenario, samples)
        resumed = median(samples, "back_to_loop_done_s")
        add(scenario, "store back → loop finished", resumed, "s", fmt_seconds(resumed))
        self.add_back_to_end(scenario, samples)
        self.add_rows(scenario, samples)

    rows_hung_spool_on = rows_down_spool_off

    def rows_outage_mid_run(self, scenario: str, samples: list[dict[str, Any]]) -> None:
        add = self.add
        reference = self.reference("loop_s")
        reference_rate = self.calls / reference if reference else None
        for phase, what in (
            ("before", "store up, before"),
            ("during", "store down"),
            ("after", "store up again, after"),
        ):
            rate = median(samples, f"{phase}_calls_per_s")
            ratio = reference_rate / rate if reference_rate else None  # time per call
            add(
                scenario,
                f"calls/s, {what} ({median(samples, f'{phase}_s'):.1f} s)",
                rate,
                "1/s",
                fmt_rate(rate),
                ratio=ratio,
            )
        during = statistics.median(
            sample["during_calls_per_s"] / sample["before_calls_per_s"] for sample in samples
        )
        add(scenario, "calls/s down / up before (same process)", during, "x", f"{during:.2f}x")
        stalls = [
            median(samples, f"{phase}_longest_chunk_s") for phase in ("before", "during", "after")
        ]
        add(
            scenario,
            "longest 1,000 calls: before / during / after",
            stalls[1],
            "s",
            " / ".join(fmt_seconds(stall) for stall in stalls),
            ratio=self.ratio(stalls[1], "longest_chunk_s"),
        )
        waits = [median(samples, f"{phase}_blocked_s") for phase in ("before", "during", "after")]
        add(
            scenario,
            "logging calls waiting for room: before / during / after",
            waits[1],
            "s",
            " / ".join(fmt_seconds(wait) for wait in waits),
            "never",
            all(sample["blocked_s"] == 0 for sample in samples),
        )
        self.add_failed_attempts(scenario, samples)
        self.add_spooled(scenario, samples)
        first, empty = (
            median(samples, "back_to_first_upload_s"),
            median(samples, "back_to_spool_empty_s"),
        )
        add(
            scenario,
            "store back → spool uploading / empty",
            first,
            "s",
            f"{fmt_seconds(first)} / {fmt_seconds(empty)}",
        )
        self.add_rows(scenario, samples)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    quick = "2 repeats, 1M calls, a 5 s outage mid-run"
    parser = scenario_parser(__doc__, DEFAULT_JSON, quick, SCENARIOS)
    parser.add_argument("--calls", type=int, help="log_metric calls per loop (default 3M)")
    parser.add_argument(
        "--flush-rows",
        type=int,
        help=f"flush_rows of the writers (default {FLUSH_ROWS:,}, quick {FLUSH_ROWS_QUICK:,})",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    info = machine_info()
    started = dt.datetime.now(dt.UTC)

    server, s3 = start_s3_server()
    try:
        bench = Bench(s3, args, repeats)
        bench.run()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    results = bench.table()

    info["load_average_at_end"] = load_average()
    loads = [sample["load_average"][0] for runs in bench.samples.values() for sample in runs]
    print(f"# lakestore spool benchmark ({'quick' if args.quick else 'full'})\n")
    print(machine_markdown(info))
    bound = BACKPRESSURE_FACTOR * bench.flush_rows
    print(
        f"- S3: moto server on 127.0.0.1 behind tests/tcp_proxy.py; {bench.calls:,} calls a "
        f"loop, flush_interval {FLUSH_INTERVAL} s, flush_rows {bench.flush_rows:,} (logging "
        f"waits while {bound:,} rows wait to be written); 1-min load average at the "
        f"children's starts {min(loads):.2f} to {max(loads):.2f}"
    )
    print(
        f"- medians of {repeats} repeats (scenarios 6 and 7: one run), each in a fresh "
        "process; ratio = the figure / the same figure of scenario 1 (> 1 is slower)\n"
    )
    print(results.markdown())
    for failure in results.failures:
        print(f"\nFAILED CHECK: {failure}")

    write_report(
        args.json,
        "bench_spool",
        started,
        info,
        settings={
            "quick": args.quick,
            "repeats": repeats,
            "calls": bench.calls,
            "chunk": CHUNK,
            "flush_interval": FLUSH_INTERVAL,
            "flush_rows": bench.flush_rows,
            "outage_phases_s": bench.phases,
            "storage_options": {**FAIL_FAST, "endpoint_url": "<proxy>"},
            "scenarios": {name: bench.label(name) for name in bench.scenarios},
            "statistic": "median",
        },
        rows=results.rows,
        samples=bench.samples,
        failures=results.failures,
    )
    return 1 if results.failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        child_main(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1:]))
