"""The logging API: runs, and the module-level functions that act on the active run.

Familiar to MLflow users: ``start_run`` returns a :class:`Run` that is also a context
manager, and ``lakestore.log_metric(...)`` and friends act on the innermost active run.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import getpass
import logging
import math
import os
import socket
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from lakestore import batches, merge, session, spec, system_metrics
from lakestore.errors import (
    InvalidValueError,
    NoActiveRunError,
    ParamConflictError,
    RunAlreadyActiveError,
    RunDeletedError,
    RunNotFoundError,
)
from lakestore.session import open_for_writing
from lakestore.storage import Storage
from lakestore.writer import RunWriter, WriterOptions

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger("lakestore")

DEFAULT_EXPERIMENT = "default"
"""The experiment of runs started with no experiment named (``$LAKESTORE_EXPERIMENT``)."""


def set_experiment(name: str) -> None:
    """Make ``name`` the experiment of runs started from now on without one."""
    session.current().experiment = spec.check_experiment_name(name)


def _chosen_experiment() -> str | None:
    """set_experiment()'s experiment, else ``$LAKESTORE_EXPERIMENT``, else None."""
    return session.current().experiment or os.environ.get("LAKESTORE_EXPERIMENT")


def current_experiment() -> str:
    """The experiment of a run started now without one: set_experiment()'s, else
    ``$LAKESTORE_EXPERIMENT``, else "default"."""
    return _chosen_experiment() or DEFAULT_EXPERIMENT


_last_us = 0
_clock_lock = threading.Lock()


def _now_us() -> int:
    """Microseconds since the epoch, strictly increasing within this process.

    Params, tags and run events take their time from here, so that "the latest row" is
    never a tie between two rows one process wrote.
    """
    global _last_us
    with _clock_lock:
        _last_us = max(time.time_ns() // 1000, _last_us + 1)
        return _last_us


_INT64_MAX = 2**63 - 1

_SECONDS_NOT_MILLISECONDS = (1e9, 1e11)
"""Timestamps refused as plainly seconds: as milliseconds they fall in 1970 to 1973 (from
the 12th day of 1970), as seconds in 2001 to 5138."""


def _timestamp_ns(timestamp: int | float | dt.datetime | None) -> int:
    """Nanoseconds since the epoch from MLflow-style milliseconds or an aware datetime."""
    if timestamp is None:
        return time.time_ns()
    if isinstance(timestamp, dt.datetime):
        if timestamp.tzinfo is None:
            raise InvalidValueError(
                f"timestamp {timestamp!r} has no time zone; pass an aware datetime such as "
                "datetime.now(timezone.utc), or milliseconds since the epoch"
            )
        nanoseconds = int(timestamp.timestamp() * 1_000_000) * 1000
    elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        if not math.isfinite(timestamp):
            raise InvalidValueError(f"timestamp {timestamp!r} is not a finite number")
        if _SECONDS_NOT_MILLISECONDS[0] <= timestamp < _SECONDS_NOT_MILLISECONDS[1]:
            raise InvalidValueError(
                f"timestamp {timestamp!r} would be in {1970 + int(timestamp // 31_557_600_000)}"
                ": it looks like seconds since the epoch, and timestamps are milliseconds (as "
                f"in MLflow): pass {timestamp!r} * 1000, or a datetime"
            )
        nanoseconds = int(timestamp * 1000) * 1000  # stored in whole microseconds
    else:
        raise InvalidValueError(
            f"timestamp {timestamp!r} is not milliseconds since the epoch or a datetime"
        )
    if not -_INT64_MAX <= nanoseconds <= _INT64_MAX:
        raise InvalidValueError(f"timestamp {timestamp!r} is outside years 1678 to 2262")
    return nanoseconds


class Run:
    """One run being logged by this process. End it with :meth:`end` or a ``with`` block."""

    def __init__(
        self,
        storage: Storage,
        experiment: str,
        run_id: str,
        run_name: str | None,
        parent_run_id: str | None,
        params: dict[str, str],
        options: WriterOptions,
    ) -> None:
        self.storage = storage
        self.experiment = experiment
        self.run_id = run_id
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self._params = params
        self._params_lock = threading.Lock()
        self._status: str = "RUNNING"
        self._writer = RunWriter(storage, experiment, run_id, options)
        self._sampler: system_metrics.SystemMetricsSampler | None = None
        self._session = session.current()

    def __repr__(self) -> str:
        return (
            f"Run(experiment={self.experiment!r}, run_id={self.run_id!r}, "
            f"run_name={self.run_name!r}, status={self._status!r})"
        )

    @property
    def status(self) -> str:
        """RUNNING until the run ends, then FINISHED, FAILED or KILLED."""
        return self._status

    @property
    def store_uri(self) -> str:
        """The store this run writes to."""
        return self.storage.url

    # -- metrics ------------------------------------------------------------------------

    def log_metric(
        self,
        key: str,
        value: float,
        step: int = 0,
        timestamp: int | float | dt.datetime | None = None,
    ) -> None:
        """Log ``value`` for metric ``key`` at ``step`` (MLflow's default step is 0 too).

        ``timestamp`` is milliseconds since the epoch or a datetime; by default, now.
        NaN and infinities are stored as they are.
        """
        self._writer.append_metric(
            key, value, step, time.time_ns() if timestamp is None else _timestamp_ns(timestamp)
        )

    def log_metrics(
        self,
        metrics: dict[str, float],
        step: int = 0,
        timestamp: int | float | dt.datetime | None = None,
    ) -> None:
        """Log several metrics at one step; if one value is bad, none is logged."""
        self._writer.append_metrics(metrics, step, _timestamp_ns(timestamp))

    def log_metric_series(
        self,
        key: str,
        values: Any,
        steps: Any = None,
        timestamps: Any = None,
    ) -> None:
        """Log a whole series of one metric at once.

        ``values`` is anything Arrow converts to float64: a list, a NumPy array, an Arrow
        array or a Polars Series. ``steps`` (int64) defaults to 0, 1, 2, ...; ``timestamps``
        (datetimes, or milliseconds since the epoch) default to now for every point.
        """
        table = batches.series_table(key, values, steps, timestamps, _now_us)
        if table is not None:
            self._writer.append_metric_table(table)

    # -- params and tags ----------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Log a param. Logging it again with the same value is fine; another value is not."""
        self.log_params({key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        """Log several params; if one is bad or conflicts, none is logged."""
        now = _now_us()
        prepared = {}
        for key, value in params.items():
            spec.check_key(key, "param")
            prepared[key] = spec.param_text_and_float(key, value)
        with self._params_lock:
            rows = []
            for key, (text, number) in prepared.items():
                logged = self._params.get(key)
                if logged is None:
                    rows.append((key, text, number, now))
                elif logged != text:
                    raise ParamConflictError(
                        f"param {key!r} was logged as {logged!r}; it cannot change to "
                        f"{text!r} in the same run (log it under another key, or use a tag "
                        "or a metric)"
                    )
            self._writer.append_rows("params", rows)
            self._params.update((row[0], row[1]) for row in rows)

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag; setting it again replaces the value readers see."""
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set several tags; if one is bad, none is set."""
        self._writer.append_rows("tags", batches.tag_rows(tags, _now_us()))

    def delete_tag(self, key: str) -> None:
        """Remove a tag: readers no longer see it (a null value is recorded)."""
        self._writer.append_rows("tags", [(spec.check_key(key, "tag"), None, _now_us())])

    # -- life cycle ---------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything logged so far to the store now."""
        self._writer.flush()

    def end(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` (FINISHED, FAILED or KILLED) and write all its data.

        If the final write fails (after retries), FlushError is raised and the data stays
        buffered: calling end() again, or interpreter exit, tries once more. Ending a run
        that has ended and written everything does nothing.
        """
        if status not in spec.RUN_STATUSES or status == "RUNNING":
            raise InvalidValueError(f"status {status!r} is not one of FINISHED, FAILED, KILLED")
        if self._sampler is not None:
            self._sampler.stop()  # its last sample is logged before the run ends
        self._session.last_active = self
        if not self._writer.closed:
            now = _now_us()
            self._writer.append_rows("runs", [_event(status, self, end_time=now, event_time=now)])
            self._status = status
            stack = self._session.active_runs.get()
            if self in stack:
                self._session.active_runs.set(tuple(run for run in stack if run is not self))
            self._writer.close()
        elif self._writer.holds_data:  # an earlier end() failed or was interrupted
            self._writer.flush()
        self._session.open_runs.discard(self)

    def abandon_after_fork(self) -> None:
        """In a forked child: this run is the parent's, never to be ended or written here."""
        self._writer.abandon_after_fork()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None or (issubclass(exc_type, SystemExit) and exc.code in (0, None)):  # type: ignore[union-attr]
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")


def _event(status: str, run: Run, *, event_time: int, **times: int | None) -> tuple[Any, ...]:
    """A row of the runs table, in schema order."""
    return (
        event_time,
        status,
        run.run_name,
        run.parent_run_id,
        _user(),
        socket.gethostname(),
        times.get("start_time"),
        times.get("end_time"),
        run._writer.writer_id,
    )


@functools.cache
def _user() -> str | None:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid, as in some containers
        return None
    return os.fsencode(name).decode("utf-8", "replace")  # undecodable bytes in $LOGNAME


def _find_run(storage: Storage, run_id: str) -> str:
    """The experiment that holds ``run_id``, or RunNotFoundError."""
    from lakestore import layout

    found = layout.find_run(storage, run_id)
    if found is None:
        raise RunNotFoundError(f"no run {run_id!r} in store {storage.url}")
    return found


def _read_run_table(storage: Storage, table: str, experiment: str, run_id: str) -> pa.Table:
    from lakestore import layout

    rows = layout.read_run(storage, experiment, table, run_id)
    return rows.sort_by("timestamp" if table != "runs" else "event_time")


def _check_not_deleted(storage: Storage, experiment: str, run_id: str) -> None:
    """Raise RunDeletedError if the run, or its experiment, is deleted: as in MLflow, a
    deleted run is restored before it is resumed."""
    for owner, what in ((run_id, "run"), (spec.EXPERIMENT_RUN, "experiment")):
        tags = _read_run_table(storage, "tags", experiment, owner)
        deleted = [
            value
            for key, value in zip(
                tags.column("key").to_pylist(), tags.column("value").to_pylist(), strict=True
            )
            if key == spec.DELETED_TAG
        ]
        if deleted and deleted[-1] is not None:
            name = run_id if what == "run" else experiment
            raise RunDeletedError(
                f"cannot resume run {run_id!r}: its {what} {name!r} is deleted; restore it "
                f"first (lakestore {what}s restore {name})"
            )


def start_run(
    run_id: str | None = None,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    store: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    flush_interval: float | None = None,
    flush_rows: int | None = None,
    log_system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> Run:
    """Start a new run, or resume the run ``run_id``, and make it the active run.

    ``experiment`` defaults to the one set by set_experiment(), ``$LAKESTORE_EXPERIMENT``,
    or "default". With another run active, pass ``nested=True`` to start a child run (its
    parent is recorded). ``store`` overrides the store set by set_store(). Data reaches the
    store every ``flush_interval`` seconds (default 5), when ``flush_rows`` metric rows are
    buffered, and when the run ends.

    With ``log_system_metrics`` (default: ``$LAKESTORE_SYSTEM_METRICS``), the machine's
    CPU, memory, disk, network and GPU figures are logged as metrics named as MLflow names
    them (``system/cpu_utilization_percentage``, ...) every ``system_metrics_interval``
    seconds (default: ``$LAKESTORE_SYSTEM_METRICS_INTERVAL``, else 10) until the run ends.
    """
    active_runs = session.current().active_runs
    stack = tuple(run for run in active_runs.get() if run.status == "RUNNING")
    if stack and not nested:
        raise RunAlreadyActiveError(
            f"run {stack[-1].run_id} is active; end it first, or pass nested=True "
            "to start a child run"
        )
    if nested and stack and parent_run_id is None:
        parent_run_id = stack[-1].run_id
    if experiment is None and run_id is None and _chosen_experiment() is None and nested and stack:
        experiment = stack[-1].experiment  # a child run lives with its parent
    run = begin_run(
        run_id,
        experiment=experiment,
        run_name=run_name,
        tags=tags,
        parent_run_id=parent_run_id,
        store=store,
        storage_options=storage_options,
        flush_interval=flush_interval,
        flush_rows=flush_rows,
        log_system_metrics=log_system_metrics,
        system_metrics_interval=system_metrics_interval,
    )
    active_runs.set((*stack, run))
    return run


def begin_run(
    run_id: str | None = None,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    store: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    flush_interval: float | None = None,
    flush_rows: int | None = None,
    log_system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> Run:
    """Start a new run, or resume ``run_id``, as start_run() does but without making it
    the active run: for code that logs through the Run object (MLflow's client)."""
    if parent_run_id is not None:
        spec.check_run_id(parent_run_id)
    if run_name is not None:
        spec.check_text(run_name, "run name")
    options = WriterOptions.from_environment(flush_interval, flush_rows)
    sampling = system_metrics.enabled(log_system_metrics)
    interval = system_metrics.interval_of(system_metrics_interval) if sampling else None
    storage = open_for_writing(store, storage_options)
    _register_exit_handler()

    params: dict[str, str] = {}
    if run_id is None:
        if experiment is None:
            experiment = _chosen_experiment()
        if experiment is None:
            experiment = DEFAULT_EXPERIMENT
        experiment = spec.check_experiment_name(experiment)
        run_id = spec.new_id()
        if run_name is None:
            run_name = spec.new_run_name()
    else:
        spec.check_run_id(run_id)
        found = _find_run(storage, run_id)
        if experiment is not None and experiment != found:
            raise RunNotFoundError(
                f"run {run_id!r} belongs to experiment {found!r}, not {experiment!r}"
            )
        experiment = found
        logged = _read_run_table(storage, "params", experiment, run_id)
        keys, values = logged.column("key").to_pylist(), logged.column("value").to_pylist()
        for key, value in zip(keys, values, strict=True):
            params.setdefault(key, value)  # the earliest value is the param's value
        _check_not_deleted(storage, experiment, run_id)
        if run_name is not None:  # a new name given on resuming renames the run
            tags = {**(tags or {}), spec.RUN_NAME_TAG: run_name}
        events = _read_run_table(storage, "runs", experiment, run_id)
        if run_name is None:
            names = [n for n in events.column("run_name").to_pylist() if n is not None]
            run_name = names[-1] if names else None
        if parent_run_id is None:
            parents = [p for p in events.column("parent_run_id").to_pylist() if p is not None]
            parent_run_id = parents[0] if parents else None

    tag_rows = batches.tag_rows(tags or {}, _now_us())
    run = Run(storage, experiment, run_id, run_name, parent_run_id, params, options)
    run._writer.heartbeat_event = lambda: _event("RUNNING", run, event_time=_now_us())
    now = _now_us()
    run._writer.append_rows("runs", [_event("RUNNING", run, event_time=now, start_time=now)])
    run._writer.append_rows("tags", tag_rows)
    try:
        run.flush()  # the run is visible (and resumable by id) as soon as it starts
    except BaseException:
        run._writer.discard()  # no run was started: leave nothing to be written later
        raise
    run._session.open_runs.add(run)
    run._session.last_active = run
    if interval is not None:
        run._sampler = system_metrics.SystemMetricsSampler(run, interval)
        run._sampler.start()
    return run


def active_run() -> Run | None:
    """The innermost active run of this thread (or asyncio task), or None.

    Like MLflow's, the active run is per thread: a thread started by the training script
    logs through the Run object, not through the module-level functions.
    """
    # An attribute, not current(): every module-level logging call comes through here.
    runs: tuple[Run, ...] = session.current_session.active_runs.get()  # type: ignore[assignment]
    for run in reversed(runs):
        if run.status == "RUNNING":  # a run ended from another thread is no longer active
            return run
    return None


def last_active_run() -> Run | None:
    """The active run, else the run of this process that was active last (the last one
    ended), else None: as in MLflow, for reading back the run a training call logged."""
    return active_run() or cast("Run | None", session.current().last_active)


def _require_active_run() -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError("no active run: call lakestore.start_run() first")
    return run


def end_run(status: str = "FINISHED") -> None:
    """End the active run with ``status``; does nothing if no run is active."""
    run = active_run()
    if run is not None:
        run.end(status)


def log_param(key: str, value: Any) -> None:
    """Log a param on the active run."""
    _require_active_run().log_params({key: value})


def log_params(params: dict[str, Any]) -> None:
    """Log several params on the active run."""
    _require_active_run().log_params(params)


def log_metric(
    key: str, value: float, step: int = 0, timestamp: int | float | dt.datetime | None = None
) -> None:
    """Log a metric on the active run."""
    _require_active_run().log_metric(key, value, step, timestamp)


def log_metrics(
    metrics: dict[str, float], step: int = 0, timestamp: int | float | dt.datetime | None = None
) -> None:
    """Log several metrics at one step on the active run."""
    _require_active_run().log_metrics(metrics, step, timestamp)


def log_metric_series(key: str, values: Any, steps: Any = None, timestamps: Any = None) -> None:
    """Log a whole series of one metric on the active run."""
    _require_active_run().log_metric_series(key, values, steps, timestamps)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run."""
    _require_active_run().set_tags({key: value})


def set_tags(tags: dict[str, Any]) -> None:
    """Set several tags on the active run."""
    _require_active_run().set_tags(tags)


def delete_tag(key: str) -> None:
    """Remove a tag of the active run."""
    _require_active_run().delete_tag(key)


_uncaught: list[type[BaseException]] = []


def _record_uncaught(
    exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    _uncaught.append(exc_type)
    _previous_excepthook(exc_type, exc, traceback)


_previous_excepthook = sys.excepthook
"""The hook that _record_uncaught passes exceptions on to (set by _register_exit_handler)."""


def _end_runs_at_exit() -> None:
    """At interpreter exit, end the runs still open and write their data.

    A script that ends normally ends its runs FINISHED (as in MLflow); one stopped by an
    uncaught exception ends them FAILED, or KILLED for Ctrl-C. Threads of the script that
    are still running may still log: then the runs are ended after they finish.
    """
    if _script_threads_running():
        # Write what is logged so far while uploads still work, then end after the threads.
        for run in list(session.current().open_runs):
            try:
                run.flush()
            except Exception as error:
                logger.error("lakestore could not flush run %s at exit: %s", run.run_id, error)
        atexit.register(_end_open_runs)
    else:
        _end_open_runs()


def _end_open_runs() -> None:
    status = "FINISHED"
    if _uncaught:
        status = "KILLED" if issubclass(_uncaught[-1], KeyboardInterrupt) else "FAILED"
    ended = session.current()
    for run in list(ended.open_runs):
        try:
            run.end(status)
        except Exception as error:  # one run's store being down must not stop the others
            logger.error("lakestore could not end run %s at exit: %s", run.run_id, error)
    ended.resource(merge.BackgroundMerges).merge_at_exit()


def _script_threads_running() -> bool:
    """True if a non-daemon thread other than this one and thread-pool workers is alive."""
    pool = sys.modules.get("concurrent.futures.thread")
    # Pool workers only stop after this hook returns: waiting for them would never end.
    pool_workers = set(getattr(pool, "_threads_queues", {}))
    current = threading.current_thread()
    return any(
        thread.is_alive() and not thread.daemon and thread is not current
        for thread in threading.enumerate()
        if thread not in pool_workers
    )


_exit_handler_registered = False


def _register_exit_handler() -> None:
    """At the first run of the process, install the exit hooks: one that notes an uncaught
    exception (so that the runs still open end FAILED, or KILLED for Ctrl-C), and
    _end_runs_at_exit.

    That one must run before concurrent.futures stops taking work at shutdown, since s3fs
    and aiohttp need it to upload. Threading's exit hooks run before that one when
    registered after it (they run in reverse order), so this is called once the store is
    open.
    """
    global _exit_handler_registered, _previous_excepthook
    if _exit_handler_registered:
        return
    _exit_handler_registered = True
    _previous_excepthook, sys.excepthook = sys.excepthook, _record_uncaught
    try:
        getattr(threading, "_register_atexit", atexit.register)(_end_runs_at_exit)
    except RuntimeError:  # the main thread has already finished: exit is under way
        atexit.register(_end_open_runs)


def _renew_clock_lock_after_fork() -> None:
    """A lock another thread of the parent held at the fork stays held in the child."""
    global _clock_lock
    _clock_lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_clock_lock_after_fork)
