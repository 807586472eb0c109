"""Store maintenance: what killed or cut-off writers left behind."""

from __future__ import annotations

import os
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
    from lakestore.tracking import open_existing_store

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
    from lakestore.spool import Spool
    from lakestore.tracking import open_existing_store

    try:
        storage = open_existing_store(uri, storage_options)
        if storage.fs is None:
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
