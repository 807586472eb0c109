"""Store maintenance: removing what killed writers left behind."""

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
