"""Opening a store: the one chosen for new runs, and stores opened to read or maintain.

The store that runs are written to is ``set_store()``'s, else ``$LAKESTORE_URI``, else the
folder ``./lakestore-data``. Each store is opened once per process; one opened
for writing is created on first use (its format marker written).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from lakestore import format
from lakestore.errors import StoreError
from lakestore.storage import Storage, default_uri, open_storage

_store_uri: str | None = None
_store_options: dict[str, Any] = {}
_opened: dict[tuple[str, str], Storage] = {}
_writable: set[Storage] = set()
_opened_lock = threading.Lock()


def set_store(uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
    """Make ``uri`` the store of runs started from now on.

    ``uri`` is a local folder or any fsspec URL (``s3://bucket/prefix``). Without a call,
    the store is ``$LAKESTORE_URI``, else the folder ``./lakestore-data``.
    """
    global _store_uri, _store_options
    _store_uri = os.fspath(uri)
    _store_options = dict(storage_options or {})


def reset() -> None:
    """Forget set_store() (runs go to ``$LAKESTORE_URI`` or ``./lakestore-data`` again)
    and the stores opened, with what was learned of their files."""
    global _store_uri, _store_options
    _store_uri, _store_options = None, {}
    with _opened_lock:
        _opened.clear()
        _writable.clear()


def get_store_uri() -> str:
    """The store that runs started now would write to."""
    return _store_uri if _store_uri is not None else default_uri()


def get_store_options() -> dict[str, Any]:
    """The storage options given to set_store()."""
    return dict(_store_options)


def opened(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> Storage:
    """The store at ``uri`` (default: the store runs are written to), opened once per
    process and set of options, so that what the process learns of its files (its
    FileIndex) serves every reader and writer of it."""
    if uri is None:
        uri = get_store_uri()
        storage_options = _store_options if storage_options is None else storage_options
    where = os.fspath(uri)
    if "://" not in where:  # the folder it names now, whatever the working folder later
        where = os.path.abspath(os.path.expanduser(where))
    key = (where, repr(sorted((storage_options or {}).items())))
    with _opened_lock:
        storage = _opened.get(key)
        if storage is None:
            storage = _opened[key] = open_storage(where, storage_options)
    return storage


def open_existing_store(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> Storage:
    """The store at ``uri`` (default: the store runs are written to), which must exist."""
    storage = opened(uri, storage_options)
    if format.read_format_version(storage) is None:
        raise StoreError(
            f"no lakestore store at {storage.url}: log a run there first, "
            "or pass the store's location (--store / $LAKESTORE_URI)"
        )
    return storage


def open_for_writing(
    uri: str | os.PathLike[str] | None, storage_options: dict[str, Any] | None
) -> Storage:
    """The store at ``uri`` (default: the store runs are written to), created if new;
    checked once per process."""
    storage = opened(uri, storage_options)
    with _opened_lock:
        if storage in _writable:
            return storage
    try:
        format.ensure_format_marker(storage)
    except OSError as error:  # a read-only folder, a file in the way, no access
        raise StoreError(
            f"cannot write to store {storage.url}: {error}; log to a store you may "
            "write to (set_store(), $LAKESTORE_URI or store=)"
        ) from None
    with _opened_lock:
        _writable.add(storage)
    return storage


def _renew_lock_after_fork() -> None:
    global _opened_lock
    _opened_lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock_after_fork)
