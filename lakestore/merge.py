"""Merging: an experiment's inbox files and small parts become a few large parts.

Every flush adds a file to an experiment's inbox, and reading many small files is what
makes a store slow, above all on object storage. A merge reads the inbox files not merged
yet (each writer's in sequence order, up to the first one missing), writes their rows
and those of the experiment's small parts as new parts, brings the metric summary up to
date, and publishes all of it as the experiment's next snapshot, a file created
exclusively: of merges racing for a generation, one publishes and the others discard
what they wrote. Readers follow the newest snapshot (lakestore.layout), so they see every
row exactly once before, during and after a merge, and a merge killed at any point
leaves only files that no snapshot names.

Writers merge on their own (:class:`BackgroundMerges`, one per session): as they write,
a background thread lists the experiment and merges once enough inbox files wait, and a
process that exits normally merges what waits in the experiments it wrote to. Of
the writers that find files waiting, the one that creates the lease of the next
generation merges, and the others leave it to that one. Files that a snapshot no longer
needs are deleted once that snapshot is ``grace`` seconds old, so that a reader that
listed the files just before still finds them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from lakestore import files, layout, session, spec
from lakestore.errors import StoreError
from lakestore.layout import ExperimentFiles, Part, Snapshot

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import Storage

logger = logging.getLogger("lakestore")

MERGE_AFTER_FILES = 64
"""Unmerged inbox files in an experiment that make a writer merge it."""

BATCH_BYTES = 256 * 1024 * 1024
"""Bytes of inbox files one merge reads at most; the rest waits for the next merge."""

SMALL_PART_ROWS = 64 * 1024
"""Parts with fewer rows are merged again by every merge of their experiment; larger
ones are merged by size (FAN_IN), so that a merge costs about what it adds."""

FAN_IN = 8
"""Parts of a similar size that are merged into one once this many exist."""

MAX_PART_ROWS = 64 * 1024 * 1024
"""Parts with this many rows are never merged again."""

WRITER_PART_ROWS = 4 * 1024 * 1024
"""The largest part a writer's merge writes by merging parts: a larger merge would hold
the experiment's lease for seconds while files pile up in the inbox. ``compact`` merges
parts up to MAX_PART_ROWS."""

ROW_GROUP_ROWS = 128 * 1024
_CHUNK_ROWS = 1024 * 1024
_COMMIT_ATTEMPTS = 3

DEFAULT_GRACE = 60.0
"""Seconds a snapshot must be old before the files it no longer needs go."""

EXIT_WAIT = 10.0
"""Seconds the interpreter's exit waits for merges. A merge still running then stops at
its next step (a chunk of rows, a request) and deletes what it wrote: a thread left
running inside DuckDB or Arrow while the interpreter shuts down would abort the process."""

MERGE_AT_EXIT_FILES = 16
"""Unmerged inbox files in an experiment that make a process exiting normally merge it,
if it wrote to it."""

LEASE_SECONDS = 120.0
"""How long other writers leave a merge to the writer that took its lease. A lease older
than that belongs to a merge that died (or is very slow), and is ignored."""

SORT_KEYS = {
    "metrics": ["run", "key", "step", "timestamp", "value"],
    "params": ["run", "key", "timestamp"],
    "tags": ["run", "key", "timestamp"],
    "runs": ["run", "event_time"],
    spec.SUMMARIES: ["experiment", "run", "key"],
}

_SUMMARY_OF_ROWS = """
    SELECT experiment, run, key,
           arg_max(value, (step, timestamp, value)) AS latest,
           max(step) AS latest_step,
           arg_max(timestamp, (step, timestamp, value)) AS latest_timestamp,
           min(value) AS min, max(value) AS max, count(*) AS count
    FROM rows GROUP BY experiment, run, key
"""

_COMBINED_SUMMARIES = """
    SELECT experiment, run, key,
           arg_max(latest, (latest_step, latest_timestamp, latest)) AS latest,
           max(latest_step) AS latest_step,
           arg_max(latest_timestamp, (latest_step, latest_timestamp, latest))
               AS latest_timestamp,
           min(min) AS min, max(max) AS max, sum(count)::BIGINT AS count
    FROM summaries GROUP BY experiment, run, key ORDER BY experiment, run, key
"""


class _StoppedError(Exception):
    """The process is exiting: the merge stops where it is."""


_stop = threading.Event()
"""Set once this process exits: merges under way stop at their next step."""


def _check_stop() -> None:
    if _stop.is_set():
        raise _StoppedError


class Outcome(NamedTuple):
    """What one call of :func:`merge_experiment` did."""

    merged_files: int
    """Inbox files whose rows the new snapshot holds in parts (0 if none was published)."""
    generation: int
    """The generation published, or 0."""
    deleted: int
    """Files deleted because no snapshot needs them any more."""


def merge_experiment(
    storage: Storage,
    folder: str,
    *,
    min_files: int | None = None,
    grace: float = DEFAULT_GRACE,
    lease: bool = True,
    part_rows: int | None = None,
) -> Outcome:
    """Merge the experiment in ``folder`` if at least ``min_files`` (default
    MERGE_AFTER_FILES) inbox files wait, then delete what no snapshot of the last ``grace``
    seconds needs. With ``min_files=0``, merge every waiting file now.

    With ``lease``, leave the merge to another writer that holds the lease of the next
    generation (see _take_lease). Parts are merged into parts of at most ``part_rows``
    (default WRITER_PART_ROWS).
    Safe while writers write, readers read and other merges run, in this process or
    others: a merge that loses the race for its generation discards its parts and tries
    again on the new snapshot.
    """
    if min_files is None:
        min_files = MERGE_AFTER_FILES
    if part_rows is None:
        part_rows = WRITER_PART_ROWS
    merged_files = generation = deleted = failures = 0
    while True:
        _check_stop()
        found = layout.list_experiments(storage, folder).get(folder, ExperimentFiles(folder))
        if not lease:
            deleted += collect_garbage(storage, found, grace)
        if not _newest_snapshot_readable(found):
            logger.warning(
                "lakestore does not merge %s: its newest snapshot cannot be read "
                "(lakestore check lists it)",
                storage.path(folder),
            )
            break
        batch, capped = _batch(storage, found)
        if len(batch) < max(min_files, 1):
            break
        taken = _take_lease(storage, found) if lease else None
        if taken is False:
            break  # another writer merges this generation
        if lease:  # cleaning up too is left to the writer that merges
            deleted += collect_garbage(storage, found, grace)
        published = None
        try:
            published = _merge(storage, found, batch, part_rows)
        finally:
            if published is None and isinstance(taken, str):
                storage.delete(taken)  # the next writer that looks merges at once
        if published is None:
            failures += 1  # another merge published first: look again
            if failures == _COMMIT_ATTEMPTS:
                break
            continue
        merged_files += len(batch)
        generation = published
        if not capped:  # what waited is merged; files written since wait for the next merge
            break
    if generation and min_files == 0:  # asked for now: what the new snapshot replaced goes too
        found = layout.list_experiments(storage, folder).get(folder, ExperimentFiles(folder))
        deleted += collect_garbage(storage, found, grace)
    return Outcome(merged_files, generation, deleted)


def _take_lease(storage: Storage, found: ExperimentFiles) -> str | bool:
    """Whether this process should merge the experiment to its next generation: the
    lease's path if it created that generation's lease, True if the lease there is over
    LEASE_SECONDS old, False if another writer holds it.

    A lease only saves work: when thousands of writers find files waiting at once, one
    merges and the others do not read, write and discard the same files. Which merge
    publishes is still decided by the snapshot's exclusive creation alone.
    """
    generation = (found.snapshot.generation if found.snapshot else 0) + 1
    path = layout.lease_path(found.folder, generation)
    held = found.leases.get(path)
    if held is not None and time.time() - held.modified < LEASE_SECONDS:
        return False
    if storage.put_if_absent(path, b""):
        return path
    return held is not None


def _newest_snapshot_readable(found: ExperimentFiles) -> bool:
    if not found.snapshots:
        return True
    newest = max(found.snapshots, key=lambda path: layout.parse(path).generation)  # type: ignore[union-attr]
    return found.snapshot_file == newest


def _batch(storage: Storage, found: ExperimentFiles) -> tuple[list[str], bool]:
    """The inbox files the next merge takes: each writer's unmerged files in sequence
    order, up to the first one missing or unreadable, at most BATCH_BYTES in all; and
    whether that limit left some out."""
    by_writer: dict[str, dict[int, str]] = {}
    for path, entry in found.inbox.items():
        if entry.sequence > found.merged_through(entry.writer or ""):
            by_writer.setdefault(entry.writer or "", {})[entry.sequence] = path
    batch: list[str] = []
    size = 0
    for writer in sorted(by_writer):
        sequences = by_writer[writer]
        sequence = found.merged_through(writer) + 1
        while sequence in sequences and size < BATCH_BYTES:
            path = sequences[sequence]
            if files.skipped(storage, path):
                break
            batch.append(path)
            size += found.sizes.get(path, 0)
            sequence += 1
    return batch, size >= BATCH_BYTES


def _merge(
    storage: Storage, found: ExperimentFiles, batch: list[str], part_rows: int
) -> int | None:
    """Write parts holding ``batch`` and publish them as the next snapshot; its generation,
    or None if another merge published it first (or nothing could be read)."""
    base = found.snapshot or Snapshot(spec.unescape_name(found.folder.split("/", 1)[1]))
    generation = base.generation + 1
    inbox = _read_inbox(storage, found, batch)
    if not inbox.merged:
        return None
    parts = {table: list(base.parts.get(table, [])) for table in layout.PART_TABLES}
    written: list[str] = []
    try:
        for table in spec.TABLES:
            _check_stop()
            new_rows = inbox.tables.get(table)
            if new_rows is not None:
                small = [part for part in parts[table] if part.rows < SMALL_PART_ROWS]
                # A part that cannot be read stays as it is: readers skip it, with a warning.
                contents = files.read_files(storage, [part.path for part in small])
                readable = {
                    part: files.read_rows(storage, part.path, contents.get(part.path))
                    for part in small
                }
                rewritten = [part for part, rows in readable.items() if rows is not None]
                tables = [rows for rows in readable.values() if rows is not None]
                part = _write_part(storage, found.folder, table, generation, [*tables, new_rows])
                written.append(part.path)
                parts[table] = [p for p in parts[table] if p not in rewritten] + [part]
            parts[table] = _merge_similar(
                storage, found.folder, table, generation, parts[table], written, part_rows
            )
        _check_stop()
        metrics = inbox.tables.get("metrics")
        if metrics is not None:
            summary = _summary(storage, parts[spec.SUMMARIES], parts["metrics"], metrics)
            part = _write_part(storage, found.folder, spec.SUMMARIES, generation, [summary])
            written.append(part.path)
            parts[spec.SUMMARIES] = [part]
        snapshot = Snapshot(
            base.experiment,
            generation,
            {table: rows for table, rows in parts.items() if rows},
            {**base.merged, **inbox.merged},
        )
        _check_stop()
        published = _publish(storage, found.folder, snapshot)
    except BaseException:
        storage.delete_many(written)
        raise
    if not published:
        storage.delete_many(written)
        return None
    return generation


class _Inbox(NamedTuple):
    tables: dict[str, pa.Table]
    """The rows read, by table, in each table's file schema."""
    merged: dict[str, int]
    """For each writer, the sequence number through which its files were read."""


def _read_inbox(storage: Storage, found: ExperimentFiles, batch: list[str]) -> _Inbox:
    """The rows of ``batch``, each writer's files up to the first that cannot be read
    (reported, and left in the inbox for readers to skip)."""
    import pyarrow as pa

    contents = files.read_files(storage, batch)
    read = {path: files.read_rows(storage, path, contents.get(path)) for path in batch}
    tables: dict[str, list[pa.Table]] = {}
    merged: dict[str, int] = {}
    stopped: set[str] = set()
    for path in batch:  # each writer's files in sequence order
        entry = found.inbox[path]
        writer = entry.writer or ""
        rows = read[path]
        if writer in stopped or rows is None:
            stopped.add(writer)
            continue
        tables.setdefault(entry.table or "", []).append(rows)
        merged[writer] = entry.sequence
    return _Inbox({table: pa.concat_tables(t) for table, t in tables.items()}, merged)


def _sorted_chunks(tables: Iterable[pa.Table], table: str) -> Iterator[pa.Table]:
    """The rows of ``tables`` in chunks of about a million rows, each sorted."""
    import pyarrow as pa

    order = [(key, "ascending") for key in SORT_KEYS[table]]
    pending: list[pa.Table] = []
    pending_rows = 0
    for rows in tables:
        _check_stop()
        pending.append(rows)
        pending_rows += rows.num_rows
        if pending_rows >= _CHUNK_ROWS:
            yield pa.concat_tables(pending).sort_by(order)
            pending, pending_rows = [], 0
    if pending:
        yield pa.concat_tables(pending).sort_by(order)


def _write_part(
    storage: Storage, folder: str, table: str, generation: int, tables: Iterable[pa.Table]
) -> Part:
    """Write the rows of ``tables`` as a new part of ``table``, sorted in chunks so that a
    reader filtering on the run skips most row groups."""
    import pyarrow.parquet as pq

    path = layout.part_path(folder, table, generation)
    schema = spec.schema_of(table)
    rows = 0

    def write(destination: object) -> None:
        nonlocal rows
        with pq.ParquetWriter(destination, schema, compression="zstd") as writer:  # type: ignore[arg-type]
            for chunk in _sorted_chunks(tables, table):
                writer.write_table(chunk.cast(schema), row_group_size=ROW_GROUP_ROWS)
                rows += chunk.num_rows

    storage.put_file(path, write)
    return Part(path, rows)


def _merge_similar(
    storage: Storage,
    folder: str,
    table: str,
    generation: int,
    parts: list[Part],
    written: list[str],
    largest: int,
) -> list[Part]:
    """``parts`` after merging FAN_IN parts of a similar size into one, if that many
    exist and they hold at most ``largest`` rows, so that an experiment keeps a number of
    parts that grows with the logarithm of its rows (up to parts of ``largest`` rows).
    Parts of MAX_PART_ROWS rows or more stay as they are."""
    by_level: dict[int, list[Part]] = {}
    for part in parts:
        if SMALL_PART_ROWS <= part.rows < MAX_PART_ROWS and not files.skipped(storage, part.path):
            level, size = 0, SMALL_PART_ROWS * FAN_IN
            while part.rows >= size:
                level, size = level + 1, size * FAN_IN
            by_level.setdefault(level, []).append(part)
    for level in sorted(by_level):
        similar = by_level[level]
        chosen = similar[:FAN_IN]
        if len(chosen) == FAN_IN and sum(part.rows for part in chosen) <= largest:
            merged = _write_part(
                storage,
                folder,
                table,
                generation,
                (batch for part in chosen for batch in _part_batches(storage, part.path, table)),
            )
            written.append(merged.path)
            return [part for part in parts if part not in chosen] + [merged]
    return parts


def _part_batches(storage: Storage, path: str, table: str) -> Iterator[pa.Table]:
    """The rows of a live part, a row group at a time. A part this process may not read
    fails the merge, and is skipped from then on (with a warning)."""
    import pyarrow.parquet as pq

    schema = spec.schema_of(table)
    try:
        opened = storage.open_read(path)
    except PermissionError:
        files.check(storage, path)
        raise
    with opened as file:
        parquet = pq.ParquetFile(file)
        for group in range(parquet.num_row_groups):
            _check_stop()
            # In this thread (see files.read_rows): no Arrow thread holds the Python file.
            rows = parquet.read_row_group(group, columns=schema.names, use_threads=False)
            yield rows.cast(schema)


def _summary(
    storage: Storage, summaries: list[Part], metric_parts: list[Part], new_rows: pa.Table
) -> pa.Table:
    """The metric summary of every metrics row of the new snapshot: the old summary
    combined with that of ``new_rows``. An old summary that cannot be read is rebuilt from
    the metrics parts."""
    import duckdb

    connection = duckdb.connect(config={"autoinstall_known_extensions": False, "threads": 2})
    try:
        contents = files.read_files(storage, [part.path for part in summaries])
        old = [files.read_rows(storage, part.path, contents.get(part.path)) for part in summaries]
        if all(table is not None for table in old):
            partial = [_summarise(connection, new_rows), *old]
        else:  # rebuilt from every metrics row of the new snapshot
            partial = [
                _summarise(connection, rows)
                for part in metric_parts
                for rows in _part_batches(storage, part.path, "metrics")
            ]
        return _combine(connection, partial)  # type: ignore[arg-type]
    finally:
        connection.close()


def _summarise(connection: object, rows: pa.Table) -> pa.Table:
    connection.register("rows", rows)  # type: ignore[attr-defined]
    try:
        return connection.sql(_SUMMARY_OF_ROWS).to_arrow_table()  # type: ignore[attr-defined, no-any-return]
    finally:
        connection.unregister("rows")  # type: ignore[attr-defined]


def _combine(connection: object, partial: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    schema = spec.summary_schema()
    summaries = pa.concat_tables([table.cast(schema) for table in partial])
    connection.register("summaries", summaries)  # type: ignore[attr-defined]
    try:
        combined = connection.sql(_COMBINED_SUMMARIES).to_arrow_table()  # type: ignore[attr-defined]
    finally:
        connection.unregister("summaries")  # type: ignore[attr-defined]
    return combined.cast(schema)  # type: ignore[no-any-return]


def _publish(storage: Storage, folder: str, snapshot: Snapshot) -> bool:
    """Create the snapshot file, unless one of its generation exists: True if created."""
    import pyarrow.parquet as pq

    table = snapshot.to_table()
    return storage.put_file(
        layout.snapshot_path(folder, snapshot.generation),
        lambda destination: pq.write_table(table, destination, compression="zstd"),
        exclusive=True,
    )


def collect_garbage(storage: Storage, found: ExperimentFiles, grace: float) -> int:
    """Delete the files of ``found`` that no reader can need any more. Returns how many.

    A reader reads the newest snapshot it lists. Once a snapshot has been there for
    ``grace`` seconds, a reader that listed before it had that long to read the files it
    replaced; one that lists now takes it or a newer one, and neither needs those files.
    So the newest snapshot at least ``grace`` seconds old decides: the inbox files it holds
    in parts, parts of its generation or before that it does not name, and older
    snapshots go. Parts of a later generation belong to newer snapshots, or to merges
    still under way, and stay.
    """
    # Leases of generations that exist are done with; no reader reads leases.
    newest = found.snapshot.generation if found.snapshot else 0
    leases = [path for path in found.leases if layout.parse(path).generation <= newest]  # type: ignore[union-attr]
    storage.delete_many(leases)
    now = time.time()
    old = [path for path, info in found.snapshots.items() if now - info.modified >= grace]
    if not old:
        return len(leases)
    path = max(old, key=lambda older: layout.parse(older).generation)  # type: ignore[union-attr]
    snapshot = (
        found.snapshot
        if path == found.snapshot_file
        else layout.read_snapshot(storage, path, storage.get(path))
    )
    if snapshot is None:
        return len(leases)
    live = {part.path for parts in snapshot.parts.values() for part in parts}
    doomed = [
        inbox
        for inbox, entry in found.inbox.items()
        if entry.sequence <= snapshot.merged.get(entry.writer or "", -1)
    ]
    doomed += [
        part
        for part, entry in found.parts.items()
        if entry.generation <= snapshot.generation and part not in live
    ]
    doomed += [
        older
        for older in found.snapshots
        if layout.parse(older).generation < snapshot.generation  # type: ignore[union-attr]
    ]
    storage.delete_many(doomed)
    return len(leases) + len(doomed)


# -- purging deleted runs -------------------------------------------------------------------


def purge_runs(storage: Storage, folder: str, runs: set[str]) -> int:
    """Remove the rows of ``runs`` from the experiment in ``folder`` for good: merge its
    inbox, then rewrite each part that holds their rows without them, and publish the
    result as the next snapshot. Returns the number of parts rewritten.

    Each run keeps its deletion tag (a row in a part), so that rows of it that a merge
    racing with the purge writes again stay deleted, for the next purge to remove. The
    parts replaced are deleted, as a merge's are, once the new snapshot is ``grace``
    seconds old.
    """
    merge_experiment(storage, folder, min_files=0, lease=False, part_rows=MAX_PART_ROWS)
    for _ in range(_COMMIT_ATTEMPTS):
        found = layout.list_experiments(storage, folder).get(folder, ExperimentFiles(folder))
        base = found.snapshot
        if base is None or not _newest_snapshot_readable(found):
            return 0  # nothing merged (an unreadable newest snapshot is reported by merges)
        generation = base.generation + 1
        parts = {table: list(kept) for table, kept in base.parts.items()}
        written: list[str] = []
        try:
            for table, table_parts in base.parts.items():
                for part in table_parts:
                    if not _holds_runs(storage, part.path, runs):
                        continue
                    batches = (
                        _without_runs(batch, table, runs)
                        for batch in _part_batches(storage, part.path, table)
                    )
                    rewritten = _write_part(storage, folder, table, generation, batches)
                    written.append(rewritten.path)
                    parts[table] = [p for p in parts[table] if p != part]
                    if rewritten.rows:
                        parts[table].append(rewritten)
            if not written:
                return 0
            snapshot = Snapshot(
                base.experiment,
                generation,
                {table: kept for table, kept in parts.items() if kept},
                dict(base.merged),
            )
            published = _publish(storage, folder, snapshot)
        except BaseException:
            storage.delete_many(written)
            raise
        if published:
            storage.delete_many([path for path in written if path not in snapshot.all_parts()])
            return len(written)
        storage.delete_many(written)  # a merge published first: purge its snapshot
    raise StoreError(
        f"merges of {storage.path(folder)} kept publishing before the purge: run lakestore gc again"
    )


def _holds_runs(storage: Storage, path: str, runs: set[str]) -> bool:
    """Whether the part ``path`` has rows of ``runs`` (other than their deletion tags)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with storage.open_read(path) as file:
        table = layout.table_of(path)
        columns = ["run", "key"] if table == "tags" else ["run"]
        rows = pq.read_table(file, columns=columns, use_threads=False, pre_buffer=False)
    if table == "tags":
        rows = rows.filter(pc.not_equal(rows["key"], spec.DELETED_TAG))
    return bool(pc.any(pc.is_in(rows["run"], pa.array(sorted(runs)))).as_py())


def _without_runs(batch: pa.Table, table: str, runs: set[str]) -> pa.Table:
    """``batch`` without the rows of ``runs``, but for their deletion tags."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kept = pc.invert(pc.is_in(batch["run"], pa.array(sorted(runs))))
    if table == "tags":
        kept = pc.or_(kept, pc.equal(batch["key"], spec.DELETED_TAG))
    return batch.filter(kept)


# -- merging in the background, as writers write ------------------------------------------

CHECK_EVERY_FILES = 16
"""Files a process writes to an experiment between two looks at whether to merge it."""


class BackgroundMerges:
    """The merges a session runs on background threads as its writers write (one
    :class:`~lakestore.session.Resource` of the session), and what is left to merge at
    exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], threading.Thread] = {}
        self._again: set[tuple[str, str]] = set()
        """Experiments to look at again when their merge under way ends."""
        self._written: dict[tuple[str, str], int] = {}
        self._storages: dict[tuple[str, str], Storage] = {}

    def request(self, storage: Storage, experiment: str, written: int) -> None:
        """Note that ``written`` files went to ``experiment``, and merge it on a background
        thread if enough files wait: looked at on the first request (to catch up with what
        others left) and then every CHECK_EVERY_FILES files. A look due while the
        experiment is being merged happens when that merge ends."""
        folder = layout.experiment_folder(experiment)
        key = (storage.url, folder)
        with self._lock:
            first = key not in self._written
            self._written[key] = self._written.get(key, 0) + written
            self._storages[key] = storage
            if not first and self._written[key] < CHECK_EVERY_FILES:
                return
            self._written[key] = 0
            if key in self._running:
                self._again.add(key)
                return
            thread = threading.Thread(
                target=self._merge_in_background,
                args=(storage, folder, key),
                name="lakestore-merge",
                daemon=True,
            )
            self._running[key] = thread
        try:
            thread.start()
        except RuntimeError:  # at interpreter exit no thread can start: the next process merges
            with self._lock:
                del self._running[key]

    def _merge_in_background(self, storage: Storage, folder: str, key: tuple[str, str]) -> None:
        while True:
            try:
                merge_experiment(storage, folder)
            except _StoppedError:
                pass
            except Exception as error:  # reported, never raised into the training thread
                logger.warning("lakestore could not merge %s: %s", storage.path(folder), error)
            with self._lock:
                if key not in self._again or _stop.is_set():
                    self._again.discard(key)
                    del self._running[key]
                    return
                self._again.discard(key)

    def wait(self, timeout: float | None = EXIT_WAIT) -> None:
        """Wait up to ``timeout`` seconds (None: for as long as it takes) for the merges
        under way to finish."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._running.values())
            if not threads:
                return
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                return

    def merge_at_exit(self, timeout: float | None = None) -> None:
        """For a process that exits normally: merge each experiment written to where
        MERGE_AT_EXIT_FILES inbox files wait, so that a sweep of processes leaves few files
        for readers, and wait for the merges, ``timeout`` seconds (default EXIT_WAIT); then
        stop those still running, at their next step."""
        if timeout is None:
            timeout = EXIT_WAIT
        # Merged in this thread: a thread started this late that runs Arrow code makes the
        # process abort as it exits. A timer (pure Python) stops the merges at the deadline.
        deadline = threading.Timer(timeout, _stop.set)
        deadline.daemon = True
        deadline.start()
        try:
            with self._lock:
                storages = dict(self._storages)
            self.wait(timeout)
            for (_, folder), storage in storages.items():
                try:
                    merge_experiment(storage, folder, min_files=MERGE_AT_EXIT_FILES)
                except _StoppedError:
                    break
                except Exception as error:  # reported; the exit goes on
                    logger.warning("lakestore could not merge %s: %s", storage.path(folder), error)
        finally:
            deadline.cancel()
            _stop.set()  # merges still running stop at their next step
            self.wait(_STOP_WAIT)

    def close(self) -> None:
        """Wait for the merges under way, then forget the experiments written to, so
        that no exit merges them."""
        self.wait(None)
        with self._lock:
            self._written.clear()
            self._storages.clear()


def request(storage: Storage, experiment: str, written: int) -> None:
    """Note that ``written`` files went to ``experiment`` (see BackgroundMerges.request),
    for the merges of this process's session."""
    session.current().resource(BackgroundMerges).request(storage, experiment, written)


_STOP_WAIT = 120.0
"""Seconds the exit waits, at most, for merges to reach their next step and stop."""


def _clear_stop_after_fork() -> None:
    _stop.clear()  # a child forked as its parent exits has its own exit to come


os.register_at_fork(after_in_child=_clear_stop_after_fork)


def compact(
    storage: Storage,
    experiment: str | None = None,
    *,
    grace: float = DEFAULT_GRACE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Merge every inbox file of every experiment (or of one) now, and delete what no
    snapshot of the last ``grace`` seconds needs (see merge_experiment). Returns the number of inbox
    files merged; ``progress(done, total)`` is called after each experiment."""
    if experiment is not None:
        folders = [layout.experiment_folder(experiment)]
    else:
        folders = sorted(layout.list_experiments(storage))
    merged = 0
    for done, folder in enumerate(folders, start=1):
        outcome = merge_experiment(
            storage, folder, min_files=0, grace=grace, lease=False, part_rows=MAX_PART_ROWS
        )
        merged += outcome.merged_files
        if progress is not None:
            progress(done, len(folders))
    return merged
