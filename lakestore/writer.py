"""The write path: in-memory columnar buffers, flushed to Parquet files in the background.

A :class:`RunWriter` holds one run's rows for one process. Logging calls append to typed
buffers (:class:`lakestore.batches.LoggedValues`), which become Arrow tables without a
per-row conversion. Its :class:`FileSink` writes them as Parquet files from a background
thread every ``flush_interval`` seconds, or sooner when ``flush_rows`` rows are waiting;
:meth:`RunWriter.close` writes the rest.

Every flush gives each file its final name before the first attempt to write it, and a
failed write is retried under that same name: a file written twice holds the same rows, so
retries never duplicate data.

On a remote store, a file that cannot be uploaded goes to the local spool
(:mod:`lakestore.spool`) instead of staying in memory, and so do the files after it until
the store answers again: logging never waits for an unreachable store.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor  # imported now: not at interpreter exit
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TypeVar

from lakestore import batches, layout, merge, session, spec
from lakestore.batches import LoggedValues, bad_metric, bad_step, not_a_float
from lakestore.errors import FlushError, InvalidValueError, RunEndedError
from lakestore.spool import Spool
from lakestore.storage import Staged, write_bytes

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import pyarrow as pa

    from lakestore.storage import Storage

logger = logging.getLogger("lakestore")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_FLUSH_INTERVAL = 5.0
"""Seconds between background flushes; ``$LAKESTORE_FLUSH_INTERVAL`` overrides it."""

DEFAULT_FLUSH_ROWS = 1_000_000
"""Buffered metric rows that start a flush before the interval is up."""

BACKPRESSURE_FACTOR = 8
"""Logging blocks while this many times ``flush_rows`` rows wait to be written."""

CLOSE_RETRY_DELAYS = (0.5, 2.0)
"""Seconds to wait before each extra attempt of the final flush when a run ends."""

_PLAIN_NUMBERS = (float, int)

COMPRESS_FROM_BYTES = 64 * 1024
"""Files whose data (in memory) is smaller than this are written uncompressed; compaction
compresses them when it merges them."""

WRITE_DIRECTLY_FROM_BYTES = 8 * 1024 * 1024
"""Files whose rows take this many bytes are encoded straight into their destination:
built in memory first, a 4M-row file cost twice as long, in fresh memory to fault in."""

UPLOAD_PATIENCE = 10.0
"""Seconds an upload may go unanswered before its file is spooled and the store taken for
unreachable. The upload may still land later: the spooled copy then replaces it with the
same bytes."""

UPLOAD_PATIENCE_UNDER_PRESSURE = 1.0
"""Seconds an upload may take while half the rows logging may buffer wait: longer than a
healthy store takes for one file, shorter than a fast loop takes to fill the buffers."""

SPOOL_RETRY_DELAYS = (1.0, 30.0)
"""Seconds between attempts to upload spooled files: the first, doubling up to the last."""


class WriterOptions(NamedTuple):
    """How often a writer flushes and how much it may hold in memory."""

    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    flush_rows: int = DEFAULT_FLUSH_ROWS
    heartbeat_interval: float = spec.HEARTBEAT_INTERVAL
    spool: bool = True
    """Spool files that a remote store refuses to local disk (else keep them in memory)."""
    merge: bool = True
    """Merge the experiment's small files in the background as they pile up."""

    @classmethod
    def from_environment(
        cls, flush_interval: float | None = None, flush_rows: int | None = None
    ) -> WriterOptions:
        """Options from the arguments, else $LAKESTORE_FLUSH_INTERVAL / _ROWS, else defaults.

        $LAKESTORE_HEARTBEAT_INTERVAL sets the seconds between heartbeats (default 60);
        readers count a writer as lost after spec.LOST_AFTER seconds without one.
        """
        if flush_interval is None:
            flush_interval = _from_environment(
                "LAKESTORE_FLUSH_INTERVAL", float, DEFAULT_FLUSH_INTERVAL
            )
        if flush_rows is None:
            flush_rows = _from_environment("LAKESTORE_FLUSH_ROWS", int, DEFAULT_FLUSH_ROWS)
        if not (flush_interval > 0 and math.isfinite(flush_interval)):
            raise InvalidValueError(
                f"flush_interval must be a finite number of seconds > 0, got {flush_interval!r}"
            )
        if flush_rows < 1:
            raise InvalidValueError(f"flush_rows must be >= 1, got {flush_rows!r}")
        heartbeat_interval = _from_environment(
            "LAKESTORE_HEARTBEAT_INTERVAL", float, spec.HEARTBEAT_INTERVAL
        )
        if not (heartbeat_interval > 0 and math.isfinite(heartbeat_interval)):
            raise InvalidValueError(
                "$LAKESTORE_HEARTBEAT_INTERVAL must be a finite number of seconds > 0, "
                f"got {heartbeat_interval!r}"
            )
        return cls(flush_interval, flush_rows, heartbeat_interval)


def _from_environment(name: str, parse: type[Any], default: Any) -> Any:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return parse(text)
    except ValueError:
        raise InvalidValueError(
            f"${name} is {text!r}, which is not a number; unset it or give a number"
        ) from None


class RunWriter:
    """Buffers one run's rows in this process and writes them to the store as Parquet.

    Thread-safe: any number of threads may log to one writer. The logged values wait in a
    :class:`~lakestore.batches.LoggedValues`; a :class:`FileSink` turns them into files and
    writes them, and its lock guards both.
    """

    def __init__(
        self, storage: Storage, experiment: str, run_id: str, options: WriterOptions
    ) -> None:
        self.storage = storage
        self.experiment = experiment
        self.run_id = run_id
        self.writer_id = spec.new_id()
        self.options = options
        self._max_buffered = options.flush_rows
        self._logged = LoggedValues()
        # Read on every logging call, and the same objects for life.
        self._key_codes, self._metrics = self._logged.key_codes, self._logged.metrics
        self.heartbeat_event: Callable[[], tuple[Any, ...]] | None = None
        """Builds the runs-table row that says this writer is alive; set by the run."""
        self._sink = FileSink(
            storage, experiment, run_id, self.writer_id, options, self._taken, self._beat
        )

    # -- logging (called on the training thread) ------------------------------------------

    def append_metric(self, key: str, value: float, step: int, time_ns: int) -> None:
        """Buffer one metric row; raises InvalidValueError and buffers nothing if bad."""
        try:
            code = self._key_codes.get(key)
        except TypeError:  # an unhashable key
            code = None
        if code is None:
            code = self._add_key(key)
        if type(value) not in _PLAIN_NUMBERS and not_a_float(value):
            raise bad_metric(key, value)
        if type(step) is bool:
            raise bad_step(key, step)
        sink = self._sink
        with sink.lock:
            if sink.closed:
                sink.check_open()
            buffer = self._metrics
            length = len(buffer.keys)
            try:
                buffer.values.append(value)
                buffer.steps.append(step)
                buffer.keys.append(code)
                buffer.times.append(time_ns)
            except BaseException as error:  # a bad value, or Ctrl-C half-way: undo the row
                raise buffer.undo(length, length, error, key, value, step) from None
            if len(buffer.values) >= self._max_buffered:
                self._seal_locked()

    def append_metrics(self, metrics: dict[str, float], step: int, time_ns: int) -> None:
        """Buffer several metrics at one step: all of them, or none if one is bad."""
        logged, sink = self._logged, self._sink
        try:
            codes = [logged.key_codes.get(key) for key in metrics]
        except TypeError:  # an unhashable key
            codes = [None] * len(metrics)
        if None in codes:
            codes = [
                self._add_key(key) if c is None else c
                for key, c in zip(metrics, codes, strict=True)
            ]
        if type(step) is bool:
            raise bad_step(next(iter(metrics), ""), step)
        with sink.lock:
            sink.check_open()
            buffer = logged.metrics
            length = row = len(buffer.values)
            try:
                for key, code in zip(metrics, codes, strict=True):
                    row = len(buffer.values)
                    value = metrics[key]
                    if type(value) not in _PLAIN_NUMBERS and not_a_float(value):
                        raise TypeError(f"{value!r} is no float")
                    buffer.values.append(value)
                    buffer.steps.append(step)
                    buffer.keys.append(code)  # type: ignore[arg-type]
                    buffer.times.append(time_ns)
            except BaseException as error:  # all of the batch or none of it
                raise buffer.undo(length, row, error, key, value, step) from None
            if len(buffer.values) >= self._max_buffered:
                self._seal_locked()

    def append_metric_table(self, table: pa.Table) -> None:
        """Buffer a ready Arrow table of metric rows (the vectorised path)."""
        sink = self._sink
        with sink.lock:
            sink.check_open()
            self._logged.sealed.append(table)
            sink.hand_over_locked(table.num_rows)

    def append_rows(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Buffer rows of the runs, params or tags table, each in schema order."""
        sink = self._sink
        with sink.lock:
            sink.check_open()
            self._logged.rows[table].extend(rows)
            if table == "runs":
                sink.event_logged()

    def _add_key(self, key: str) -> int:
        spec.check_key(key, "metric")
        with self._sink.lock:
            self._sink.check_open()
            return self._logged.key_code(key)

    def _seal_locked(self) -> None:
        """Hand the current metric buffer to the flusher (lock held)."""
        rows = self._logged.seal()
        if rows:
            self._sink.hand_over_locked(rows)

    # -- what the sink calls --------------------------------------------------------------

    @contextlib.contextmanager
    def _taken(self) -> Iterator[list[tuple[str, pa.Table]]]:
        """The tables of everything logged so far, taken for a flush; given back to be
        taken by the next flush if the block fails (e.g. out of memory)."""
        sink = self._sink
        with sink.lock:
            sink.count_locked(self._logged.seal())
            batch = self._logged.take()
        try:
            yield batches.batch_tables(batch)
        except BaseException:
            with sink.lock:
                self._logged.give_back(batch)
            raise

    def _beat(self) -> None:
        """Log a heartbeat event, if the run says what one is."""
        if self.heartbeat_event is not None:
            with contextlib.suppress(RunEndedError):
                self.append_rows("runs", [self.heartbeat_event()])

    # -- life cycle -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything buffered so far; raises FlushError if some files failed.

        Files that failed stay queued under their names and are retried by the next flush.
        """
        self._sink.flush()

    def close(self) -> None:
        """Stop the background thread and write everything.

        The final flush is tried again after each of CLOSE_RETRY_DELAYS; if it still fails,
        FlushError is raised and the rows stay buffered: flush() retries them.
        """
        self._sink.close()

    def discard(self) -> None:
        """Stop the background thread and drop everything buffered, writing nothing."""
        self._sink.stop()
        self._sink.drop()
        self._logged.clear()

    def abandon_after_fork(self) -> None:
        """In a forked child: disown this writer, whose thread and data stay with the parent.

        Its locks may have been copied while held, so they are replaced; logging to it
        raises RunEndedError instead of filling buffers that no thread would write.
        """
        self._sink.abandon_after_fork()
        self._logged.clear()

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._sink.closed

    @property
    def holds_data(self) -> bool:
        """True while some logged rows are not yet written to the store."""
        with self._sink.lock:
            return self._sink.holds_files or self._logged.holds_data


class _NamedFile:
    """A file given its final name, waiting to be written (compared by identity)."""

    __slots__ = ("path", "table", "table_name")

    def __init__(self, table_name: str, path: str, table: pa.Table) -> None:
        self.table_name = table_name
        self.path = path
        self.table = table


class FileSink:
    """Writes the files of one writer to the store: in the background, on a flush, when the
    run ends.

    It names each file before the first attempt to write it, writes a flush's files
    (uploads side by side, run events last), spools the files a remote store does not take
    in time and uploads them once it answers again, bounds the rows waiting to be written
    (back-pressure), beats the writer's heartbeat, and lets a forked child disown it.

    ``lock`` guards the sink's queue and the writer's logged values alike; ``take`` yields
    the tables of what was logged, giving them back if its block fails; ``heartbeat`` logs
    a heartbeat event.
    """

    def __init__(
        self,
        storage: Storage,
        experiment: str,
        run_id: str,
        writer_id: str,
        options: WriterOptions,
        take: Callable[[], AbstractContextManager[list[tuple[str, pa.Table]]]],
        heartbeat: Callable[[], None],
    ) -> None:
        self.storage = storage
        self.experiment = experiment
        self.run_id = run_id
        self.writer_id = writer_id
        self.options = options
        self._take = take
        self._heartbeat = heartbeat
        self._sequence = 0
        self.lock = threading.Lock()
        self._room = threading.Condition(self.lock)
        self._flush_lock = threading.Lock()
        self.pending_rows = 0
        """Metric rows handed over or named but not yet written."""
        self._unwritten: list[_NamedFile] = []
        self.closed = False
        """True once the writer takes no more rows."""
        self._pid = os.getpid()
        self._spool = Spool(storage.url) if options.spool and storage.remote else None
        self._spooled: list[str] = []  # this writer's files in the spool, oldest first
        self._spool_retry_at = 0.0  # time.monotonic() of the next upload attempt
        self._spool_retry_delay = SPOOL_RETRY_DELAYS[0]
        self._last_event = time.monotonic()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._flush_in_background, name=f"lakestore-flush-{run_id[:8]}", daemon=True
        )
        self._thread.start()
        self._adopting: threading.Thread | None = None
        if self._spool is not None and os.path.isdir(self._spool.folder):
            self._adopting = threading.Thread(
                target=self._upload_others_spooled, name="lakestore-spool", daemon=True
            )
            self._adopting.start()

    # -- taking rows (lock held) ----------------------------------------------------------

    def check_open(self) -> None:
        """Raise RunEndedError once the writer takes no more rows."""
        if self.closed:
            if self._pid != os.getpid():
                raise RunEndedError(
                    f"run {self.run_id} belongs to process {self._pid}; a forked process "
                    f"logs to it through its own lakestore.start_run(run_id={self.run_id!r}, "
                    "store=...), as another writer of the same run"
                )
            raise RunEndedError(
                f"run {self.run_id} has ended; start_run(run_id={self.run_id!r}) resumes it"
            )

    def count_locked(self, rows: int) -> None:
        """Count ``rows`` metric rows handed over to be written (lock held)."""
        self.pending_rows += rows

    def hand_over_locked(self, rows: int) -> None:
        """Count ``rows`` metric rows handed over, wake the flush thread for them and wait
        for room (lock held)."""
        self.pending_rows += rows
        self._wake.set()
        self.wait_for_room_locked()

    def wait_for_room_locked(self) -> None:
        """Bounded back-pressure: block while too many rows wait to be written."""
        limit = BACKPRESSURE_FACTOR * self.options.flush_rows
        while self.pending_rows > limit and not self.closed and self._thread.is_alive():
            self._room.wait(timeout=1.0)

    def event_logged(self) -> None:
        """Note that a run event was logged: the next heartbeat is due an interval later."""
        self._last_event = time.monotonic()

    @property
    def holds_files(self) -> bool:
        """True while some named file is not yet written (lock held)."""
        return bool(self._unwritten)

    # -- flushing (background thread, close, explicit flush) -------------------------------

    def flush(self) -> None:
        """Write everything logged so far; raises FlushError if some files failed.

        Files that failed stay queued under their names and are retried by the next flush.
        """
        with self._flush_lock:
            with self._take() as tables:
                named = self._name_files(tables)
            self._unwritten.extend(named)
            self._write_unwritten()
        if named and self.options.merge:
            merge.request(self.storage, self.experiment, len(named))

    def _name_files(self, tables: list[tuple[str, pa.Table]]) -> list[_NamedFile]:
        named = []
        for table_name, table in tables:
            path = layout.inbox_path(
                self.experiment, table_name, self.run_id, self.writer_id, self._sequence
            )
            stored = batches.file_table(
                table_name, table, self.experiment, self.run_id, self.writer_id, self._sequence
            )
            self._sequence += 1
            named.append(_NamedFile(table_name, path, stored))
        return named

    def _write_unwritten(self) -> None:
        """Write the named files: data files together, then run events, in order.

        A file leaves the queue as soon as it is written (or spooled), so an interrupted
        flush never writes it twice.
        """
        self._upload_spooled()
        data = [item for item in self._unwritten if item.table_name != "runs"]
        events = [item for item in self._unwritten if item.table_name == "runs"]
        if self._spool is None:
            failures = self._put_in_order(data, events)
        else:
            failures = [error for error in _in_parallel(self._upload, data) if error]
            for item in events:
                if failures:  # a run's end is never visible before the data logged before it
                    break
                error = self._upload(item)
                if error is not None:
                    failures.append(error)
        if failures:
            raise FlushError(
                f"could not write {len(self._unwritten)} file(s) of run {self.run_id} to "
                f"{self.storage.url}; they stay buffered and are retried. First error: "
                f"{failures[0]}"
            )

    def _put_in_order(self, data: list[_NamedFile], events: list[_NamedFile]) -> list[str]:
        """Stage every file (on a local disk: written, then fsynced), put the data files,
        then the run events, which wait for all of them: a reader who sees a run's end
        sees the data logged before it. The errors, as text."""
        items = data + events
        staged = self.storage.stage_files(
            [(item.path, partial(write_parquet, item.table)) for item in items]
        )
        failures = [
            f"{item.path}: {result}"
            for item, result in zip(items, staged, strict=True)
            if isinstance(result, Exception)
        ]
        ready = [
            (item, result)
            for item, result in zip(data, staged, strict=False)
            if isinstance(result, Staged)
        ]
        # Uploads to an object store go side by side; renames in a folder are quick.
        put = _in_parallel if self.storage.remote else _one_by_one
        failures += [error for error in put(self._put_staged, ready) if error]
        for item, result in zip(events, staged[len(data) :], strict=True):
            if not isinstance(result, Staged):
                continue
            if failures:  # a run's end is never visible before the data logged before it
                self.storage.drop_staged(result)
                continue
            error = self._put_staged((item, result))
            if error is not None:
                failures.append(error)
        return failures

    def _put_staged(self, staged: tuple[_NamedFile, Staged]) -> str | None:
        """Put a staged file of the queue; the error, as text, if it failed."""
        item, file = staged
        try:
            self.storage.put_staged(file)
        except Exception as error:  # any backend error: the file stays queued for a retry
            self.storage.drop_staged(file)
            return f"{item.path}: {error}"
        self._written(item)
        return None

    def _upload(self, item: _NamedFile) -> str | None:
        """Upload (or spool) one named file; the error, as text, if it failed."""
        try:
            self._upload_or_spool(item)
        except Exception as error:  # any backend error: the file stays queued for a retry
            return f"{item.path}: {error}"
        self._written(item)
        return None

    def _written(self, item: _NamedFile) -> None:
        """Take a file written (or spooled) off the queue."""
        with self.lock:
            if item not in self._unwritten:  # written twice after an interrupted flush
                return
            self._unwritten.remove(item)
            if item.table_name == "metrics":
                self.pending_rows -= item.table.num_rows
                self._room.notify_all()

    def _upload_or_spool(self, item: _NamedFile) -> None:
        """Upload ``item``, or spool it if the store refuses it or has files spooled before it
        (they go first: a run's events never land before the data logged before them)."""
        assert self._spool is not None
        buffer = io.BytesIO()
        write_parquet(item.table, buffer)
        data = buffer.getvalue()
        if not self._spooled:
            try:
                _with_patience(
                    partial(self.storage.put_file, item.path, partial(write_bytes, data=data)),
                    self._short_of_room,
                )
                return
            except Exception as error:  # any backend error: the file waits in the spool
                with self.lock:
                    if not self._spooled and self._spool_retry_at <= time.monotonic():
                        logger.warning(
                            "lakestore cannot write to %s (%s); run %s goes on, its files wait "
                            "in the spool %s until the store answers",
                            self.storage.url,
                            error,
                            self.run_id,
                            self._spool.folder,
                        )
                    self._spool_retry_at = time.monotonic() + self._spool_retry_delay
        self._spool.put(item.path, data)
        with self.lock:
            self._spooled.append(item.path)

    def _upload_spooled(self, *, now: bool = False) -> None:
        """Upload this writer's spooled files, oldest first, if their next attempt is due
        (or ``now``); on a failure, the attempt after waits twice as long.

        Unless ``now``, it stops after a flush interval, leaving the rest for the next
        flush: meanwhile new files join the spool, so that catching up after an outage
        never keeps this thread from taking the rows logging produces.
        """
        if not self._spooled or (not now and time.monotonic() < self._spool_retry_at):
            return
        assert self._spool is not None
        spool = self._spool
        stop_at = time.monotonic() + self.options.flush_interval
        try:
            while self._spooled and (now or time.monotonic() < stop_at):
                _with_patience(
                    partial(spool.upload, self.storage, self._spooled[0]), self._short_of_room
                )
                with self.lock:
                    del self._spooled[0]
            if self._spooled:
                return  # out of time, not of luck: the next flush goes on
        except Exception as error:  # still unreachable: try again later
            logger.debug("lakestore spool upload failed: %s", error)
            self._spool_retry_delay = min(2 * self._spool_retry_delay, SPOOL_RETRY_DELAYS[-1])
            self._spool_retry_at = time.monotonic() + self._spool_retry_delay
        else:
            self._spool_retry_delay = SPOOL_RETRY_DELAYS[0]
            logger.warning(
                "lakestore reached %s again: the spooled files are uploaded", self.storage.url
            )

    def _short_of_room(self) -> bool:
        """True once half the rows logging may buffer wait to be written: time to spool."""
        return 2 * self.pending_rows > BACKPRESSURE_FACTOR * self.options.flush_rows

    def _upload_others_spooled(self) -> None:
        """Upload files that earlier processes left in this store's spool (crashed, or ended
        during an outage): the store answers, since this run has just started on it."""
        assert self._spool is not None
        try:
            uploaded = self._spool.drain(self.storage)
        except Exception as error:  # still unreachable: `lakestore sync` or a later run will
            logger.warning("lakestore could not upload the spool %s: %s", self._spool.folder, error)
        else:
            if uploaded:
                logger.warning(
                    "lakestore uploaded %d file(s) left in the spool %s",
                    uploaded,
                    self._spool.folder,
                )

    def _beat_if_due(self) -> None:
        """Log a heartbeat event if no run event was logged for a heartbeat interval."""
        if time.monotonic() - self._last_event >= self.options.heartbeat_interval:
            self._heartbeat()

    def _flush_in_background(self) -> None:
        while not self.closed:
            until_beat = self._last_event + self.options.heartbeat_interval - time.monotonic()
            self._wake.wait(max(0.0, min(self.options.flush_interval, until_beat)))
            self._wake.clear()
            if self.closed:
                return
            self._beat_if_due()
            try:
                self.flush()
            except Exception as error:  # reported, never raised into the training thread
                logger.warning("lakestore background flush failed: %s", error)

    def close(self) -> None:
        """Stop the background thread and write everything.

        The final flush is tried again after each of CLOSE_RETRY_DELAYS; if it still fails,
        FlushError is raised and the rows stay buffered: flush() retries them.
        """
        # Not joined yet: a flush it is in holds the flush lock the final flush takes.
        self.stop(wait=False)
        for delay in CLOSE_RETRY_DELAYS:
            try:
                self.flush()
            except FlushError as error:
                logger.warning("lakestore final flush failed, retrying in %ss: %s", delay, error)
                time.sleep(delay)
            else:
                break
        else:
            self.flush()
        # Joined now, so that it is not inside Arrow when the interpreter exits (which
        # aborts the process): it may have been waiting for the flush lock, and its flush
        # finds nothing to write.
        if self._thread is not threading.current_thread():
            self._thread.join(UPLOAD_PATIENCE)
        if self._adopting is not None:  # what earlier processes left: give it a while more
            self._adopting.join(UPLOAD_PATIENCE)
        for delay in (0.0, *CLOSE_RETRY_DELAYS):
            if not self._spooled:
                return
            time.sleep(delay)
            self._upload_spooled(now=True)
        if self._spooled:
            logger.warning(
                "lakestore could not reach %s: %d file(s) of run %s wait in the spool %s; the "
                "next run on this store uploads them, or run: lakestore sync --store %s",
                self.storage.url,
                len(self._spooled),
                self.run_id,
                self._spool.folder if self._spool else "",
                self.storage.url,
            )

    def stop(self, *, wait: bool = True) -> None:
        """Close the writer to logging and stop the background flush (``wait``: until it
        has finished)."""
        with self.lock:
            self.closed = True
            self._room.notify_all()
        self._wake.set()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def drop(self) -> None:
        """Forget the named files not yet written, and the rows waiting to be written."""
        self._unwritten = []
        self.pending_rows = 0

    def abandon_after_fork(self) -> None:
        """In a forked child: replace the locks, which may have been copied while held,
        drop the queue, whose files the parent writes, and take no more rows."""
        self.lock = threading.Lock()
        self._room = threading.Condition(self.lock)
        self._flush_lock = threading.Lock()
        self.drop()
        self.closed = True


def _with_patience(upload: Callable[[], object], impatient: Callable[[], bool]) -> None:
    """Run ``upload``; raise TimeoutError if it has not returned after UPLOAD_PATIENCE, or
    after UPLOAD_PATIENCE_UNDER_PRESSURE once ``impatient()`` (logging is about to wait for
    room).

    A slow or hanging store (a connection accepted, no answer) would otherwise hold the flush
    thread and, through back-pressure, the training loop. The upload runs on a daemon thread
    that is left behind if it hangs, so that it cannot hold up the interpreter's exit either.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            upload()
        except BaseException as error:  # handed to the waiting thread
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="lakestore-upload", daemon=True)
    thread.start()
    started = time.monotonic()
    while thread.is_alive():
        waited = time.monotonic() - started
        if waited > UPLOAD_PATIENCE or (waited > UPLOAD_PATIENCE_UNDER_PRESSURE and impatient()):
            break
        thread.join(0.05)
    if not outcome:
        raise TimeoutError(f"the store did not answer in {time.monotonic() - started:.1f} s")
    if outcome[0] is not None:
        raise outcome[0]


class WriteThreads:
    """The threads that write a flush's data files in parallel, shared by every writer of
    a session (a session resource: starting threads for each flush costs more than a
    small run's files)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="lakestore-write")

    def map(self, function: Callable[[T], R], items: list[T]) -> list[R]:
        return list(self._pool.map(function, items))

    def close(self) -> None:
        self._pool.shutdown()


def _in_parallel(function: Callable[[T], R], items: list[T]) -> list[R]:
    """``function`` of each of ``items``, on the write threads when there are several."""
    if len(items) > 1:
        try:
            return session.current().resource(WriteThreads).map(function, items)
        except RuntimeError:  # at interpreter exit no thread can start: one at a time
            pass
    return [function(item) for item in items]


def _one_by_one(function: Callable[[T], R], items: list[T]) -> list[R]:
    return [function(item) for item in items]


def write_parquet(table: pa.Table, destination: str | BinaryIO) -> None:
    """Write ``table`` as a Parquet file at ``destination`` (a path or a file object):
    compressed with zstd unless it is small."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # zstd costs about 30 us per column of a file, more than a small file's bytes are worth.
    compression = "zstd" if table.nbytes >= COMPRESS_FROM_BYTES else "none"
    if table.nbytes >= WRITE_DIRECTLY_FROM_BYTES:
        pq.write_table(table, destination, compression=compression, store_schema=False)
        return
    # Written in memory, then in one call: pyarrow writes a file object in many small
    # calls into Python, which made a small file cost 0.6 ms instead of 0.1.
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, store_schema=False)
    write_bytes(destination, memoryview(sink.getvalue()))
