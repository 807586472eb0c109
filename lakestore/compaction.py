"""Compaction: merge an experiment's small files into a few large parts, and tell readers
which files are current.

Every flush adds a file in a run's folder, so a store of many runs holds many small files,
and listing them alone takes longer than a search should. Compacting a table of an
experiment writes one *part*, ``compacted/<table>/experiment=<e>/part-<generation>.parquet``,
holding the rows of the experiment's run files and of its small parts, with a ``run``
column. Parts are created exclusively, one generation after another, so concurrent
compactions never publish overlapping parts. A part's Parquet metadata lists the files it
replaces; they are deleted after a grace period. The *live* files of a table are all files
but the replaced ones; lakestore's readers read only those, so they see every row exactly
once even while a compaction runs. A metrics part comes with a summary file under
``compacted/metric_summaries``: each run's count, min, max and latest value of each key, so
that a search across runs reads little. docs/FORMAT.md is the contract.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TypeVar

from lakestore import files, format
from lakestore.files import COMPACTED_ROOT, SUMMARIES, summary_schema

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import Storage

PART_PREFIX = "part-"
REPLACES_KEY = b"lakestore.replaces"
SUMMARY_KEY = b"lakestore.summary"

DEFAULT_GRACE = 30.0
"""Seconds between writing a part and deleting the files it replaces."""

PART_ROWS = 8 * 1024 * 1024
"""A part with fewer rows is merged again by the next compaction."""

ROW_GROUP_ROWS = 128 * 1024
_CHUNK_ROWS = 1024 * 1024
_READ_THREADS = 16
_LISTING_ATTEMPTS = 10

_SORT_KEYS = {
    "metrics": ["run", "key", "step", "timestamp"],
    "params": ["run", "key", "timestamp"],
    "tags": ["run", "key", "timestamp"],
    "runs": ["run", "event_time"],
}

_SUMMARY_SQL = """
    SELECT run, key,
           arg_max(value, (step, timestamp, value)) AS latest,
           max(step) AS latest_step,
           arg_max(timestamp, (step, timestamp, value)) AS latest_timestamp,
           min(value) AS min, max(value) AS max, count(*) AS count
    FROM chunk GROUP BY run, key ORDER BY run, key
"""

T = TypeVar("T")


class Listing(NamedTuple):
    """The live files of a table: root-relative paths of run files and of parts."""

    runs: list[str]
    parts: list[str]


class _Footer(NamedTuple):
    replaces: frozenset[str]
    rows: int
    summary: str | None
    writer_ids: bool  # has a writer_id column (parts written before it was kept do not)


# Part names are never reused (each is one generation higher than the last) and a part never
# changes, so its footer can be remembered for the life of the process.
_FOOTERS: dict[tuple[str, str], _Footer | None] = {}


def part_folder(table: str, experiment_folder: str) -> str:
    """Where the parts of ``table`` for one experiment (``experiment=<escaped>``) live."""
    return f"{COMPACTED_ROOT}/{table}/{experiment_folder}"


def summary_path(storage: Storage, part: str) -> str | None:
    """The metric summary file of the metrics part at ``part``, if it names one."""
    footer = _footer(storage, part)
    if footer is None or footer.summary is None:
        return None
    return f"{part_folder(SUMMARIES, part.split('/')[-2])}/{footer.summary}"


def _generation(path: str) -> int:
    """The generation of a part or summary, from its name ``part-<generation>[-...]``."""
    name = posixpath.basename(path)
    return int(name[len(PART_PREFIX) :].split("-")[0].split(".")[0])


def _footer(storage: Storage, path: str) -> _Footer | None:
    """What the footer of the part ``path`` says, or None if it cannot be read as a part
    (readers then skip it, see lakestore.files)."""
    key = (storage.url, path)
    if key not in _FOOTERS:
        if len(_FOOTERS) > 100_000:
            _FOOTERS.clear()
        _FOOTERS[key] = _read_footer(storage, path)
    return _FOOTERS[key]


def _read_footer(storage: Storage, path: str) -> _Footer | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with storage.open_read(path) as file:
            parquet = pq.ParquetFile(file)
            metadata, schema = parquet.metadata, parquet.schema_arrow
    except pa.ArrowException as error:
        files.skip(storage, path, f"it is not a readable Parquet file ({error})")
        return None
    problem = files.schema_problem(schema, files.expected_schema(path))
    pairs = metadata.metadata or {}
    try:
        replaces = json.loads(pairs.get(REPLACES_KEY, b"[]"))
    except ValueError:
        replaces = None
    if not isinstance(replaces, list) or not all(isinstance(p, str) for p in replaces):
        problem = problem or f"its {REPLACES_KEY.decode()} metadata is not a list of paths"
    if problem is not None:
        files.skip(storage, path, problem)
        return None
    summary = pairs.get(SUMMARY_KEY)
    return _Footer(
        frozenset(replaces),
        metadata.num_rows,
        None if summary is None else summary.decode(),
        format.WRITER_COLUMN in schema.names,
    )


def has_writer_ids(storage: Storage, part: str) -> bool:
    """Whether the live part ``part`` names the writer of each row (a ``writer_id``
    column): parts written before lakestore kept it do not."""
    footer = _footer(storage, part)
    return footer is not None and footer.writer_ids


def _retrying(action: Callable[[], T]) -> T:
    """``action()``, again while a file it listed vanishes.

    A concurrent compaction deletes the files it replaced once its grace has passed; the
    listing made after that shows the part that replaced them.
    """
    for attempt in range(_LISTING_ATTEMPTS):
        try:
            return action()
        except FileNotFoundError:
            if attempt == _LISTING_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _list(storage: Storage, table: str, experiment_folder: str) -> tuple[list[str], list[str]]:
    """The run files and parts of ``table`` whose names are lakestore's (others are
    reported and left out), unreadable ones included: their names still count."""
    run_files = files.recognised(storage, storage.glob(f"{table}/{experiment_folder}/*/*.parquet"))
    parts = files.recognised(
        storage, storage.glob(f"{part_folder(table, experiment_folder)}/*.parquet")
    )
    return run_files, parts


def _readable_parts(storage: Storage, parts: list[str]) -> dict[str, _Footer]:
    footers = {part: _footer(storage, part) for part in parts if not files.skipped(storage, part)}
    return {part: footer for part, footer in footers.items() if footer is not None}


def _live(storage: Storage, run_files: list[str], parts: list[str]) -> Listing:
    footers = _readable_parts(storage, parts)
    replaced = set().union(*(footer.replaces for footer in footers.values()))
    live_runs = [path for path in run_files if path not in replaced]
    return Listing(
        [path for path in files.whole(storage, live_runs) if not files.skipped(storage, path)],
        [path for path in footers if path not in replaced],
    )


def live_files(storage: Storage, table: str, experiment_folder: str = "*") -> Listing:
    """The files of ``table`` that hold current rows, each row in exactly one of them."""
    return _retrying(lambda: _live(storage, *_list(storage, table, experiment_folder)))


def _read_rows(storage: Storage, path: str, run_id: str | None = None) -> pa.Table | None:
    """The rows of the run file or part ``path`` (of ``run_id`` only, if given) in its
    kind's schema, with the ``writer_id`` column of a part that has one; None if it cannot
    be read: then it is skipped, with a warning."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = files.expected_schema(path)
    try:
        with storage.open_read(path) as file:
            rows = pq.read_table(file, filters=None if run_id is None else [("run", "=", run_id)])
        problem = files.schema_problem(rows.schema, schema)
        if problem is None:
            read = rows.select(schema.names).cast(schema)
            extra = format.WRITER_COLUMN not in schema.names
            if extra and format.WRITER_COLUMN in rows.column_names:
                writers = rows.column(format.WRITER_COLUMN).cast(pa.string())
                read = read.append_column(format.WRITER_COLUMN, writers)
            return read
        reason = problem
    except pa.ArrowException as error:
        reason = files.problem(storage, path) or f"it cannot be read as its table's ({error})"
    except OSError as error:
        if type(error) is not OSError:  # a missing file, a network error: not the file's fault
            raise
        reason = f"its data cannot be decoded ({error})"
    files.skip(storage, path, reason)
    return None


def find_run(storage: Storage, run_id: str) -> str | None:
    """The experiment folder (``experiment=<escaped>``) holding ``run_id``, if any."""
    folder = f"run={format.escape_partition_value(run_id)}"

    def find() -> str | None:
        found = files.recognised(storage, storage.glob(f"runs/experiment=*/{folder}/*.parquet"))
        if found:
            return found[0].split("/")[1]
        for part in live_files(storage, "runs").parts:
            rows = _read_rows(storage, part, run_id)
            if rows is not None and len(rows):
                return part.split("/")[-2]
        return None

    return _retrying(find)


def read_run(storage: Storage, table: str, experiment_folder: str, run_id: str) -> pa.Table:
    """The live rows of ``table`` logged to ``run_id``, in the table's schema; files that
    cannot be read are skipped, with a warning."""
    import pyarrow as pa

    folder = f"{table}/{experiment_folder}/run={format.escape_partition_value(run_id)}/"

    def read() -> pa.Table:
        schema = format.arrow_schema(table)
        listing = live_files(storage, table, experiment_folder)
        tables = []
        for path in listing.runs:
            if path.startswith(folder):
                tables.append(_read_rows(storage, path))
        for part in listing.parts:
            tables.append(_read_rows(storage, part, run_id))
        read = [rows.select(schema.names) for rows in tables if rows is not None]
        return pa.concat_tables(read) if read else schema.empty_table()

    return _retrying(read)


def _run_of(path: str) -> str:
    return format.unescape_partition_value(path.split("/")[-2].split("=", 1)[1])


def _chunks(
    storage: Storage, table: str, inputs: list[str], merged: list[str]
) -> Iterator[pa.Table]:
    """The rows of ``inputs`` with a ``run`` column, in chunks of whole files, each sorted.

    The inputs read are appended to ``merged``; those that cannot be read are skipped
    (with a warning), so that no part claims to replace them.
    """
    import pyarrow as pa

    schema = format.part_schema(table)
    order = [(key, "ascending") for key in _SORT_KEYS[table]]

    def read(path: str) -> pa.Table | None:
        rows = _read_rows(storage, path)
        if rows is None:
            return None
        if "run" not in rows.column_names:  # a run file: its run and writer are in its path
            rows = rows.add_column(0, "run", pa.array([_run_of(path)] * rows.num_rows))
            if format.WRITER_COLUMN not in rows.column_names:
                writer = pa.array([format.writer_of(path)] * rows.num_rows, pa.string())
                rows = rows.append_column(format.WRITER_COLUMN, writer)
        elif format.WRITER_COLUMN not in rows.column_names:  # a part written before
            rows = rows.append_column(format.WRITER_COLUMN, pa.nulls(rows.num_rows, pa.string()))
        return rows.select(schema.names).cast(schema)

    pending: list[pa.Table] = []
    pending_rows = 0
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        for start in range(0, len(inputs), _READ_THREADS * 8):
            batch = inputs[start : start + _READ_THREADS * 8]
            for path, rows in zip(batch, pool.map(read, batch), strict=True):
                if rows is None:
                    continue
                merged.append(path)
                pending.append(rows)
                pending_rows += len(rows)
                if pending_rows >= _CHUNK_ROWS:
                    yield pa.concat_tables(pending).sort_by(order)
                    pending, pending_rows = [], 0
    if pending:
        yield pa.concat_tables(pending).sort_by(order)


def _write_part(storage: Storage, table: str, part: str, inputs: list[str]) -> bool:
    """Create the part ``part`` from ``inputs`` (for metrics, its summary first), unless a
    part of that name exists or no input could be read: True if this call created it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = format.part_schema(table)
    folder = posixpath.dirname(part)
    metadata: dict[bytes, bytes] = {}
    summary_file = None
    if table == "metrics":
        name = posixpath.basename(part).removesuffix(".parquet")
        summary_name = f"{name}-{uuid.uuid4().hex}.parquet"
        summary_file = f"{part_folder(SUMMARIES, part.split('/')[-2])}/{summary_name}"
        metadata[SUMMARY_KEY] = summary_name.encode()

    def write(destination: str | BinaryIO) -> None:
        summaries: list[pa.Table] = []
        merged: list[str] = []
        connection = None
        if summary_file is not None:
            import duckdb

            connection = duckdb.connect(config={"autoinstall_known_extensions": False})
        with pq.ParquetWriter(
            destination, schema.with_metadata(metadata), compression="zstd"
        ) as writer:
            for chunk in _chunks(storage, table, inputs, merged):
                writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
                if connection is not None:
                    connection.register("chunk", chunk)
                    summaries.append(connection.sql(_SUMMARY_SQL).to_arrow_table())
                    connection.unregister("chunk")
            if not merged:
                raise _NothingMergedError
            # Written last, into the footer: only the inputs that could be read.
            writer.add_key_value_metadata({REPLACES_KEY: json.dumps(merged).encode()})
        if connection is not None and summary_file is not None:
            connection.close()
            summary = pa.concat_tables(summaries).cast(summary_schema())
            # Before the part becomes visible (when this returns): a live part has a summary.
            storage.put_file(
                summary_file,
                lambda target: pq.write_table(summary, target, compression="zstd"),
            )
        # The exclusive create refuses a generation that another part holds, but not one
        # whose part was published and deleted since this compaction listed (it stalled for
        # several compactions): a newer generation then exists, so give up.
        generation = _generation(part)
        if any(
            _generation(path) >= generation
            for path in storage.glob(f"{folder}/*.parquet")
            if files.kind(path) == "part"
        ):
            raise _GenerationTakenError

    try:
        created = storage.put_file(part, write, exclusive=True)
    except (_GenerationTakenError, _NothingMergedError):
        created = False
    if not created and summary_file is not None:
        storage.delete(summary_file)
    return created


class _NothingMergedError(Exception):
    """None of the inputs of a part could be read."""


class _GenerationTakenError(Exception):
    """Another compaction published this generation (or a later one) first."""


def compact_experiment(storage: Storage, table: str, experiment_folder: str) -> bool:
    """Merge the run files and small parts of one experiment's ``table`` into a part.

    True if it wrote one; False if there was nothing to merge or another compaction
    published a part first (its generation was taken). The merged files are not deleted
    here: see :func:`delete_replaced`.
    """

    def attempt() -> bool:
        run_files, parts = _list(storage, table, experiment_folder)
        listing = _live(storage, run_files, parts)
        footers = _readable_parts(storage, listing.parts)
        small_parts = [p for p in listing.parts if footers[p].rows < PART_ROWS]
        if not listing.runs and len(small_parts) < 2:
            return False
        generation = max((_generation(path) for path in parts), default=0) + 1
        part = f"{part_folder(table, experiment_folder)}/{PART_PREFIX}{generation:010d}.parquet"
        return _write_part(storage, table, part, sorted(listing.runs + small_parts))

    return _retrying(attempt)


def delete_replaced(storage: Storage, table: str, experiment_folder: str, grace: float) -> int:
    """Delete the files of one experiment's ``table`` replaced by parts at least ``grace`` old.

    A query lists the live files before reading them; files replaced less than ``grace``
    seconds ago may still be in such a list, so they wait (whichever process compacted). A
    part is deleted only once every file it replaced is gone, so that those never come
    back to life. Returns the number of files deleted.
    """
    return _retrying(lambda: _delete_settled(storage, table, experiment_folder, grace))


def _delete_settled(storage: Storage, table: str, experiment_folder: str, grace: float) -> int:
    run_files, parts = _list(storage, table, experiment_folder)
    if not parts:
        return 0
    covers = {part: footer.replaces for part, footer in _readable_parts(storage, parts).items()}
    now = time.time()
    doomed: set[str] = set()
    for part, replaced in covers.items():
        if now - storage.modified(part) >= grace:
            doomed |= replaced
    existing = set(run_files) | set(parts)
    deleted = 0
    for path in sorted(doomed & set(run_files)):
        storage.delete(path)
        existing.discard(path)
        deleted += 1
    doomed_parts = doomed & set(parts)
    while doomed_parts:
        ready = {part for part in doomed_parts if not covers.get(part, frozenset()) & existing}
        if not ready:
            break
        for part in sorted(ready):
            summary = summary_path(storage, part) if table == "metrics" else None
            storage.delete(part)
            if summary is not None:
                storage.delete(summary)
            existing.discard(part)
            deleted += 1
        doomed_parts -= ready
    if table == "metrics":
        deleted += _delete_orphan_summaries(storage, experiment_folder, parts)
    return deleted


def _delete_orphan_summaries(storage: Storage, experiment_folder: str, parts: list[str]) -> int:
    """Delete summaries left by compactions that lost the race for their generation (or
    stopped before publishing their part): those whose generation a part already has."""
    named = {summary_path(storage, part) for part in parts}
    newest = max(_generation(part) for part in parts)
    orphans = [
        path
        for path in storage.glob(f"{part_folder(SUMMARIES, experiment_folder)}/*.parquet")
        if files.kind(path) == "summary" and path not in named and _generation(path) <= newest
    ]
    for path in orphans:
        storage.delete(path)
    return len(orphans)


def _experiment_folders(storage: Storage, table: str, experiment: str | None) -> list[str]:
    if experiment is not None:
        return [f"experiment={format.escape_partition_value(experiment)}"]
    folders = {posixpath.basename(path) for path in storage.glob(f"{table}/*")}
    folders |= {posixpath.basename(path) for path in storage.glob(f"{part_folder(table, '*')}")}
    return sorted(folder for folder in folders if folder.startswith("experiment="))


def compact(
    storage: Storage,
    experiment: str | None = None,
    *,
    grace: float = DEFAULT_GRACE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compact every table of every experiment (or of one).

    Files a part replaced are deleted ``grace`` seconds after it, so that a query that
    listed them just before still finds them (this call waits for that). Safe while writers
    write, readers read and other compactions run. Returns the number of parts written;
    ``progress(done, total)`` is called after each table of each experiment.
    """
    work = [
        (table, folder)
        for table in format.TABLES
        for folder in _experiment_folders(storage, table, experiment)
    ]
    written = 0
    started = time.monotonic()
    for done, (table, folder) in enumerate(work, start=1):
        written += compact_experiment(storage, table, folder)
        if progress is not None:
            progress(done, len(work))
    if written:
        time.sleep(max(0.0, grace - (time.monotonic() - started)))
    for table, folder in work:
        delete_replaced(storage, table, folder, grace)
    return written


def compact_store(
    uri: str | None = None,
    storage_options: dict[str, object] | None = None,
    *,
    experiment: str | None = None,
    grace: float = DEFAULT_GRACE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compact the store at ``uri`` (default: the store runs are written to); see compact()."""
    from lakestore.tracking import open_existing_store

    storage = open_existing_store(uri, storage_options)
    return compact(storage, experiment, grace=grace, progress=progress)
