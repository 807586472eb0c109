"""A writer process for the tests: ``python tests/child_writer.py MODE ...``.

Modes:
  write URI EXPERIMENT RUN_ID|new KEY ROWS FLUSH_INTERVAL
      print the run id of a new run or of run RUN_ID, log ROWS points of metric KEY
      (step i, value i) to it and end it.
  halves URI EXPERIMENT RUN_ID|new KEY ROWS FLUSH_INTERVAL
      as write, but log the first half, print "half", and wait for a line on stdin before
      logging the second half.
  forever URI FLUSH_INTERVAL
      log points of metric "loss" (step i, value i) until killed; print the run id first,
      then the number of points logged after each explicit flush.
  fork URI
      log a param and 100 points and flush, fork a child that exits, one that tries to log
      to the run (it prints what it was told) and one that logs a run of its own (it
      prints "own run RUN_ID"), log 100 more points and end the run.
  thread URI
      start a run and a (non-daemon) thread that logs 20 points, and return from the main
      thread at once without ending the run.
  steady URI
      log points of metric "loss" (step i, value i), flushing every 0.1 s, until a line
      arrives on stdin; print the run id first and the number of points logged after each
      explicit flush; then end the run and print "ended".
  merge URI GRACE
      merge the store again and again (lakestore.compact) until killed.
  exit URI HOW
      log a param and a metric, do not end the run, then leave by HOW: "normal", "raise"
      or "interrupt".
"""

from __future__ import annotations

import sys
import time

import lakestore


def _start(uri: str, experiment: str, run_id: str, interval: str) -> lakestore.Run:
    run = lakestore.start_run(
        None if run_id == "new" else run_id,
        experiment=experiment,
        store=uri,
        flush_interval=float(interval),
    )
    print(run.run_id, flush=True)
    return run


def write(uri: str, experiment: str, run_id: str, key: str, rows: str, interval: str) -> None:
    run = _start(uri, experiment, run_id, interval)
    for step in range(int(rows)):
        run.log_metric(key, float(step), step=step)
    run.end()


def halves(uri: str, experiment: str, run_id: str, key: str, rows: str, interval: str) -> None:
    run = _start(uri, experiment, run_id, interval)
    half = int(rows) // 2
    for step in range(half):
        run.log_metric(key, float(step), step=step)
    print("half", flush=True)
    sys.stdin.readline()
    for step in range(half, int(rows)):
        run.log_metric(key, float(step), step=step)
    run.end()


def forever(uri: str, interval: str) -> None:
    run = lakestore.start_run(store=uri, flush_interval=float(interval))
    print(run.run_id, flush=True)
    step = 0
    while True:  # a few thousand points a second, like a fast training loop
        run.log_metric("loss", float(step), step=step)
        step += 1
        if step % 10 == 0:
            time.sleep(0.001)
        if step % 1000 == 0:  # besides the background flushes: one we know has finished
            run.flush()
            print(step, flush=True)


def steady(uri: str) -> None:
    import threading

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    run = lakestore.start_run(store=uri, flush_interval=0.1)
    print(run.run_id, flush=True)
    step = 0
    while not stop.is_set():
        run.log_metric("loss", float(step), step=step)
        step += 1
        if step % 10 == 0:
            time.sleep(0.001)
        if step % 1000 == 0:
            run.flush()
            print(step, flush=True)
    run.end()
    print("ended", flush=True)


def leave(uri: str, how: str) -> None:
    run = lakestore.start_run(store=uri)
    print(run.run_id, flush=True)
    run.log_param("lr", 0.1)
    run.log_metric("loss", 0.5, step=7)
    if how == "raise":
        raise RuntimeError("training diverged")
    if how == "interrupt":
        raise KeyboardInterrupt


def fork(uri: str) -> None:
    import multiprocessing

    run = lakestore.start_run(store=uri, flush_interval=0.05)
    print(run.run_id, flush=True)
    run.log_param("lr", 0.1)
    for step in range(100):
        run.log_metric("loss", float(step), step=step)
    run.flush()  # two data files: written by the process's pool of write threads
    context = multiprocessing.get_context("fork")
    idle = context.Process(target=time.sleep, args=(0.01,))
    trying = context.Process(target=_log_in_child, args=(run,))
    own = context.Process(target=_own_run_in_child, args=(uri,))
    children = (idle, trying, own)
    for child in children:
        child.start()
    for step in range(100, 200):
        run.log_metric("loss", float(step), step=step)
        time.sleep(0.001)
    for child in children:
        child.join()
    run.end()


def _log_in_child(run: lakestore.Run) -> None:
    try:
        run.log_metric("loss", -1.0, step=-1)
    except lakestore.LakestoreError as error:
        print(f"child: {error}", flush=True)


def _own_run_in_child(uri: str) -> None:
    with lakestore.start_run(store=uri) as run:
        run.log_param("lr", 0.2)
        run.log_metric("loss", -2.0)
    print(f"own run {run.run_id}", flush=True)


def thread(uri: str) -> None:
    import threading

    run = lakestore.start_run(store=uri)
    print(run.run_id, flush=True)

    def log() -> None:
        for step in range(20):
            time.sleep(0.01)
            run.log_metric("loss", float(step), step=step)

    threading.Thread(target=log).start()


def merge_forever(uri: str, grace: str) -> None:
    while True:
        lakestore.compact(uri, grace=float(grace))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    modes = {"write": write, "halves": halves, "forever": forever, "steady": steady, "exit": leave}
    modes |= {"fork": fork, "thread": thread, "merge": merge_forever}
    modes[mode](*args)
