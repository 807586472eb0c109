"""Compaction: merge a run's small files into one, and tell readers which files are current.

Every flush adds files, so a long run holds many small ones. Compacting a run's table writes
one file, ``compact-<hash of what it replaces>.parquet``, whose Parquet metadata lists every
file it replaces (its inputs and, transitively, what earlier compacted inputs replaced),
then deletes the inputs. The *live* files of a table are all files but the replaced ones;
lakestore's readers read only those, so they see every row exactly once even while a
compaction runs. Two compactions of the same files write the same name and the same rows; a
compacted file whose replaced set is contained in another's is itself replaced.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from lakestore import format

if TYPE_CHECKING:
    from lakestore.storage import Storage

COMPACTED_PREFIX = "compact-"
REPLACES_KEY = b"lakestore.replaces"

DEFAULT_GRACE = 30.0
"""Seconds between writing merged files and deleting the files they replace."""

_LISTING_ATTEMPTS = 10

T = TypeVar("T")

_SORT_KEYS = {
    "metrics": [("key", "ascending"), ("step", "ascending"), ("timestamp", "ascending")],
    "params": [("key", "ascending"), ("timestamp", "ascending")],
    "tags": [("key", "ascending"), ("timestamp", "ascending")],
    "runs": [("event_time", "ascending")],
}


def _replaced_by(storage: Storage, path: str) -> set[str]:
    """The file names a compacted file replaces, read from its Parquet footer."""
    import pyarrow.parquet as pq

    with storage.open_read(path) as file:
        metadata = pq.read_metadata(file).metadata or {}
    return set(json.loads(metadata.get(REPLACES_KEY, b"[]")))


def _live_in_folder(storage: Storage, folder: str, names: list[str]) -> tuple[list[str], set[str]]:
    """The live file names of one run folder, and every name its compacted files replace."""
    compacted = [name for name in names if name.startswith(COMPACTED_PREFIX)]
    if not compacted or len(names) == 1:
        return names, set()
    sets = {name: _replaced_by(storage, f"{folder}/{name}") for name in compacted}
    replaced = set().union(*sets.values())
    for name, covers in sets.items():
        if any(covers < other for other_name, other in sets.items() if other_name != name):
            replaced.add(name)  # a concurrent compaction saw more files: it wins
    return [name for name in names if name not in replaced], replaced


def _list_folder(storage: Storage, folder: str) -> list[str]:
    return [posixpath.basename(path) for path in storage.glob(f"{folder}/*.parquet")]


def _on_current_listing(
    storage: Storage, folder: str, action: Callable[[list[str]], T], names: list[str] | None = None
) -> T:
    """``action(names of folder's files)``, listed again while a listed file vanishes.

    A concurrent compaction deletes the files it replaced once its grace has passed; the
    listing made after that shows the file that replaced them.
    """
    for attempt in range(_LISTING_ATTEMPTS):
        if names is None:
            names = _list_folder(storage, folder)
        try:
            return action(names)
        except FileNotFoundError:
            if attempt == _LISTING_ATTEMPTS - 1:
                raise
            names = None
    raise AssertionError("unreachable")


def live_files(storage: Storage, table: str) -> list[str]:
    """The relative paths of ``table``'s files that hold current rows, each row once."""
    folders: dict[str, list[str]] = {}
    for path in storage.glob(f"{table}/*/*/*.parquet"):
        folder, name = posixpath.split(path)
        folders.setdefault(folder, []).append(name)
    live = []
    for folder, names in folders.items():
        current = _on_current_listing(
            storage,
            folder,
            lambda names, folder=folder: _live_in_folder(storage, folder, names)[0],
            names,
        )
        live.extend(f"{folder}/{name}" for name in current)
    return live


def compact_folder(storage: Storage, table: str, folder: str) -> bool:
    """Merge the live files of one run folder of ``table`` into one file; True if it did.

    The merged files are not deleted here: see :func:`delete_replaced`.
    """
    return _on_current_listing(
        storage, folder, lambda names: _merge_folder(storage, table, folder, names)
    )


def _merge_folder(storage: Storage, table: str, folder: str, names: list[str]) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    live, replaced = _live_in_folder(storage, folder, names)
    if len(live) < 2:
        return False
    tables = []
    for name in live:
        with storage.open_read(f"{folder}/{name}") as file:
            tables.append(pq.read_table(file))
        if name.startswith(COMPACTED_PREFIX):
            replaced |= _replaced_by(storage, f"{folder}/{name}")
    covers = sorted(replaced | set(live))
    merged = pa.concat_tables(tables).sort_by(_SORT_KEYS[table])
    merged = merged.replace_schema_metadata({REPLACES_KEY: json.dumps(covers).encode()})
    digest = hashlib.sha256("\n".join(covers).encode()).hexdigest()[:32]
    storage.put_file(
        f"{folder}/{COMPACTED_PREFIX}{digest}.parquet",
        lambda destination: pq.write_table(merged, destination, compression="zstd"),
    )
    return True


def delete_replaced(storage: Storage, folder: str, grace: float) -> int:
    """Delete the files of ``folder`` replaced by compacted files at least ``grace`` old.

    A query lists the live files before reading them; files replaced less than ``grace``
    seconds ago may still be in such a list, so they wait (whichever process compacted).
    Returns the number of files deleted.
    """
    return _on_current_listing(
        storage, folder, lambda names: _delete_settled(storage, folder, names, grace)
    )


def _delete_settled(storage: Storage, folder: str, names: list[str], grace: float) -> int:
    compacted = [name for name in names if name.startswith(COMPACTED_PREFIX)]
    if not compacted:
        return 0
    sets = {name: _replaced_by(storage, f"{folder}/{name}") for name in compacted}
    now = time.time()
    settled = [name for name in compacted if now - storage.modified(f"{folder}/{name}") >= grace]
    doomed: set[str] = set()
    for name in settled:
        doomed |= sets[name]
        doomed |= {other for other, covers in sets.items() if covers < sets[name]}
    doomed &= set(names)
    for name in doomed:
        storage.delete(f"{folder}/{name}")
    return len(doomed)


def compact(
    storage: Storage,
    experiment: str | None = None,
    run_id: str | None = None,
    *,
    grace: float = DEFAULT_GRACE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compact every run folder of every table (or of one experiment or run).

    Files a merge replaced are deleted ``grace`` seconds after it, so that a query that
    listed them just before still finds them (this call waits for that). Safe while writers
    write, readers read and other compactions run. Returns the number of files written;
    ``progress(done, total)`` is called after each folder.
    """
    experiment_part = (
        "*" if experiment is None else f"experiment={format.escape_partition_value(experiment)}"
    )
    run_part = "*" if run_id is None else f"run={format.escape_partition_value(run_id)}"
    folders = [
        (table, folder)
        for table in format.TABLES
        for folder in storage.glob(f"{table}/{experiment_part}/{run_part}")
    ]
    written = 0
    started = time.monotonic()
    for done, (table, folder) in enumerate(folders, start=1):
        written += compact_folder(storage, table, folder)
        if progress is not None:
            progress(done, len(folders))
    if written:
        time.sleep(max(0.0, grace - (time.monotonic() - started)))
    for _, folder in folders:
        delete_replaced(storage, folder, grace)
    return written


def compact_store(
    uri: str | None = None,
    storage_options: dict[str, object] | None = None,
    *,
    experiment: str | None = None,
    run_id: str | None = None,
    grace: float = DEFAULT_GRACE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compact the store at ``uri`` (default: the store runs are written to); see compact()."""
    from lakestore import tracking
    from lakestore.errors import StoreError
    from lakestore.storage import open_storage

    if uri is None:
        uri = tracking.get_store_uri()
        storage_options = (
            tracking.get_store_options() if storage_options is None else storage_options
        )
    storage = open_storage(uri, storage_options)
    if format.read_format_version(storage) is None:
        raise StoreError(f"no lakestore store at {storage.url}")
    return compact(storage, experiment, run_id, grace=grace, progress=progress)
