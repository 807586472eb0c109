"""Which files of a store lakestore reads, and the ones its readers skip.

A store may hold files that are not lakestore's (a CSV or a notebook's Parquet output
dropped into a run folder) or that no reader can decode (a copy cut short, garbage
bytes). Plain readers of the dataset fail on them; lakestore's readers leave them out and
say so, once per process, with an :class:`UnreadableFileWarning` naming the file and the
reason, so that one bad file never makes a store unreadable:

- a file whose name is not that of a lakestore file is left out when listing;
- a file with such a name is checked when a reader fails on it, when it is read whole
  (the small files of an object store) or, for inbox files DuckDB reads, by its footer
  when first listed, and left out from then on if its content is not a Parquet file
  with the table's columns and types (or this process may not read it). Checking inbox
  files before DuckDB reads them matters: DuckDB casts a column of text such as "1.0" to
  the type a query expects, where merges and the other readers refuse the file.

Files never change once written, so a verdict holds as long as the process keeps the
store open: each opened store holds its verdicts in its FileIndex (lakestore.storage).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from lakestore import layout, spec
from lakestore.errors import UnreadableFileWarning

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import Storage


def sound(storage: Storage, paths: list[str]) -> list[str]:
    """``paths`` less the files whose footer shows they cannot be read as files of their
    table (checked once a process), which are skipped from now on."""
    kept = []
    for path in paths:
        try:
            if check(storage, path):
                kept.append(path)
        except FileNotFoundError:  # deleted by a merge: readers list again
            kept.append(path)
    return kept


def skip(storage: Storage, path: str, reason: str) -> None:
    """Leave ``path`` out of every reading from now on, and warn once."""
    if path in storage.index.skipped:
        return
    storage.index.skipped[path] = reason
    warnings.warn(
        UnreadableFileWarning(
            f"skipping {storage.path(path)}: {reason}. lakestore's readers leave it out; "
            "plain Parquet readers fail on it: move it out of the store "
            "(lakestore check lists such files)"
        ),
        stacklevel=3,
    )


def skipped(storage: Storage, path: str) -> bool:
    """Whether readers leave ``path`` out."""
    return path in storage.index.skipped


def expected_schema(path: str) -> pa.Schema:
    """The columns a file of ``path``'s kind must have (docs/FORMAT.md)."""
    return spec.schema_of(layout.table_of(path))


def problem(storage: Storage, path: str, *, deep: bool = False) -> str | None:
    """Why readers cannot read ``path`` as a file of its kind, or None if they can.

    Reads the footer; with ``deep``, every page too (for a file a reader failed on
    although its footer is sound). A file this process may not read is a bad file too
    (another user's umask can make a shared store's files so). Errors of the filesystem
    itself (a missing file, a network failure) are raised, not taken for a bad file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with storage.open_read(path) as file:
            parquet = pq.ParquetFile(file)
            mismatch = layout.schema_problem(parquet.schema_arrow, expected_schema(path))
            if mismatch is not None or not deep:
                return mismatch
            for _ in parquet.iter_batches(columns=expected_schema(path).names):
                pass
    except pa.ArrowException as error:
        return f"it is not a readable Parquet file ({error})"
    except PermissionError as error:
        return _not_permitted(error)
    except OSError as error:
        if type(error) is not OSError:  # decoding errors are plain OSErrors
            raise
        return f"its data cannot be decoded ({error})"
    return None


def _not_permitted(error: PermissionError) -> str:
    return f"this process may not read it ({error.strerror or error}); ask its owner to chmod it"


def read_files(storage: Storage, paths: list[str]) -> dict[str, bytes | None]:
    """The contents of ``paths`` (None for a file gone), read at once where the store
    can; a file this process may not read is skipped from now on, with a warning, and
    left out."""
    try:
        return storage.get_many(paths)
    except PermissionError:
        pass
    contents: dict[str, bytes | None] = {}
    for path in paths:
        try:
            contents[path] = storage.get(path)
        except PermissionError as error:
            skip(storage, path, _not_permitted(error))
    return contents


def check(storage: Storage, path: str, *, deep: bool = False) -> bool:
    """True if ``path`` reads; else skip it from now on (with a warning) and return False."""
    sound = storage.index.sound
    if path in sound and not deep:
        return True
    reason = problem(storage, path, deep=deep)
    if reason is not None:
        skip(storage, path, reason)
        return False
    if len(sound) > 1_000_000:
        sound.clear()
    sound.add(path)
    return True


def read_rows(storage: Storage, path: str, data: bytes | None) -> pa.Table | None:
    """The rows of the file ``path`` whose content is ``data``, in its table's schema;
    None if it is gone or cannot be read as a file of its table (then it is skipped from
    now on, with a warning)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if data is None:
        return None
    schema = expected_schema(path)
    try:
        # Read in this thread: an Arrow thread that let go of Python's bytes while the
        # interpreter exits would need the GIL then, and abort the process.
        rows = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
        reason = layout.schema_problem(rows.schema, schema)
        if reason is None:
            rows = rows.select(schema.names).cast(schema)
            nulls = [f.name for f in schema if not f.nullable and rows.column(f.name).null_count]
            if not nulls:
                return rows
            reason = f"its column {nulls[0]} holds nulls"
    except pa.ArrowException as error:
        reason = f"it is not a readable Parquet file of its table ({error})"
    skip(storage, path, reason)
    return None


def fetch_rows(storage: Storage, paths: list[str]) -> dict[str, pa.Table | None]:
    """The rows of each file of ``paths`` in its table's schema (None for a file gone),
    fetched whole and at once (concurrent GETs on object stores); a file that cannot be
    read is skipped (with a warning) and left out.

    Files never change, so rows are kept (up to FETCHED_BYTES) for later calls to reuse.
    """
    rows: dict[str, pa.Table | None] = {}
    for path in paths:
        kept = storage.index.kept_rows(path)
        if kept is not None:
            rows[path] = kept
    wanted = [path for path in paths if path not in rows and not skipped(storage, path)]
    for path, data in read_files(storage, wanted).items():
        table = read_rows(storage, path, data)
        if table is None and data is not None:
            continue  # unreadable: skipped from now on
        rows[path] = table
        if table is not None:
            storage.index.keep_rows(path, table)
    return rows
