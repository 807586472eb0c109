"""Store maintenance: what killed or cut-off writers left behind, and files readers skip."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

DEFAULT_TEMPORARY_AGE = 3600.0
"""Seconds after which a temporary file is taken for a killed writer's leftover."""


def clean_store(
    uri: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    *,
    older_than: float = DEFAULT_TEMPORARY_AGE,
) -> int:
    """Remove the temporary files (``.<name>.<random>.tmp``) that writers killed mid-write
    left in the store at ``uri`` (default: the store runs are written to), if last written
    over ``older_than`` seconds ago, so that no file a live writer is writing goes. Readers
    never see these files; this only reclaims their space. Returns how many were removed.
    """
    from lakestore.errors import InvalidValueError
    from lakestore.session import open_existing_store

    if not older_than >= 0:
        raise InvalidValueError(f"older_than must be seconds >= 0, got {older_than!r}")
    return open_existing_store(uri, storage_options).remove_temporary(older_than)


def sync_spool(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> int:
    """Upload the files this machine's spool holds for the store at ``uri`` (default: the
    store runs are written to): files that writers could not upload during an outage and
    did not upload before they ended or crashed. Returns how many were uploaded.

    Uploading a file twice writes the same bytes under the same name, so running this while
    a writer or another sync uploads the same spool duplicates nothing.
    """
    from lakestore.errors import LakestoreError, StoreError
    from lakestore.session import open_existing_store
    from lakestore.spool import Spool

    try:
        storage = open_existing_store(uri, storage_options)
        if not storage.remote:
            return 0  # a local store is written directly: it has no spool
        spool = Spool(storage.url)
        return spool.drain(storage)
    except LakestoreError:
        raise
    except Exception as error:  # the store is still unreachable, most likely
        raise StoreError(
            f"cannot upload the spool to the store: {error}; the files stay in the spool: "
            "run lakestore sync again once the store answers"
        ) from error


def check_store(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> list[tuple[str, str]]:
    """The files under the experiments folder of the store at ``uri`` (default:
    the store runs are written to) that lakestore's readers skip and plain Parquet readers
    fail on, each with the reason: files whose names are not lakestore's, and files that
    cannot be read as a file of their table. Reads the footer of every data file: one
    request each on an object store."""
    from concurrent.futures import ThreadPoolExecutor

    from lakestore import files, layout
    from lakestore.session import open_existing_store

    storage = open_existing_store(uri, storage_options)
    found = sorted(storage.list_names(layout.EXPERIMENTS))

    def problem(path: str) -> str | None:
        entry = layout.parse(path)
        if entry is None:
            return layout.not_lakestore_reason(path)
        if entry.kind == "lease":  # empty by design, and read by no reader
            return None
        try:
            return files.problem(storage, path)
        except FileNotFoundError:  # deleted by a merge meanwhile
            return None

    with ThreadPoolExecutor(16) as pool:
        reasons = list(pool.map(problem, found))
    problems = [
        (storage.path(path), reason)
        for path, reason in zip(found, reasons, strict=True)
        if reason is not None
    ]
    problems += [  # plain readers' globs take such a folder for a data file
        (storage.path(folder), "it is a folder named like a Parquet file")
        for folder in storage.folders_named_like_files(layout.EXPERIMENTS, ".parquet")
    ]
    return sorted(problems)


def compact_store(
    uri: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    *,
    experiment: str | None = None,
    grace: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Merge every file waiting in the inboxes of the store at ``uri`` (default: the store
    runs are written to) now, rather than when writers next merge on their own, and delete
    the files no snapshot of the last ``grace`` seconds (default 60) needs.
    Returns the number of inbox files merged; ``progress(done, total)`` is called after
    each experiment. Safe while writers write, readers read and other merges run."""
    from lakestore import merge
    from lakestore.session import open_existing_store

    storage = open_existing_store(uri, storage_options)
    return merge.compact(
        storage,
        experiment,
        grace=merge.DEFAULT_GRACE if grace is None else grace,
        progress=progress,
    )
