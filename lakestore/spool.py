"""The spool: files a writer could not upload to a remote store, kept on local disk.

While an object store is unreachable, a writer keeps its training loop running by writing
each finished file to the spool instead of holding it in memory, and uploads the spooled
files, oldest first, once the store answers again. Files that a process left behind (it
crashed, or ended during the outage) are uploaded by the next writer to the same store, or
by ``lakestore sync``.

A spooled file keeps the name it would have had in the store, so uploading it twice
replaces it with the same bytes: a spool never duplicates rows, whoever uploads it.

Layout: ``<spool dir>/<store key>/store.json`` names the store, and each spooled file sits
at its path relative to the store root beside it. The spool dir is ``$LAKESTORE_SPOOL_DIR``,
else ``$XDG_CACHE_HOME/lakestore/spool``, else ``~/.cache/lakestore/spool``.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import partial
from typing import TYPE_CHECKING

from lakestore.errors import StoreError
from lakestore.storage import LocalStorage, write_bytes

if TYPE_CHECKING:
    from lakestore.storage import Storage

STORE_FILE = "store.json"


def spool_root() -> str:
    """The folder that holds the spools of every store."""
    configured = os.environ.get("LAKESTORE_SPOOL_DIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "lakestore", "spool")


class Spool:
    """The spool of one store: its files waiting for upload, at their store-relative paths."""

    def __init__(self, store_url: str, root: str | None = None) -> None:
        self.store_url = store_url
        key = hashlib.sha256(store_url.encode("utf-8")).hexdigest()[:24]
        self.folder = os.path.join(root or spool_root(), key)
        self._files = LocalStorage(self.folder)

    def put(self, relative: str, data: bytes) -> None:
        """Keep ``data`` as the file ``relative`` until it is uploaded.

        The file is complete on disk (written, fsynced, renamed) when this returns, so a
        crash right after loses nothing of it.
        """
        try:
            if not os.path.exists(self._files.path(STORE_FILE)):
                store = json.dumps({"store": self.store_url}).encode("utf-8")
                self._files.put_file(STORE_FILE, partial(write_bytes, data=store))
            self._files.put_file(relative, partial(write_bytes, data=data))
        except OSError as error:
            raise StoreError(
                f"cannot write {self._files.path(relative)} to the spool: {error}; free some "
                "space or set $LAKESTORE_SPOOL_DIR to a folder with room"
            ) from error

    def pending(self) -> list[str]:
        """The spooled files, oldest first within each writer (by sequence number)."""
        found = []
        for folder, _, names in os.walk(self.folder):
            for name in names:
                if name.endswith(".parquet") and not name.startswith("."):
                    path = os.path.join(folder, name)
                    found.append(os.path.relpath(path, self.folder).replace(os.sep, "/"))
        return sorted(found, key=_writer_and_sequence)

    def upload(self, storage: Storage, relative: str) -> None:
        """Upload one spooled file to ``storage`` and drop it from the spool.

        A file another process uploaded and removed meanwhile is fine: it is in the store.
        """
        data = self._files.get(relative)
        if data is None:
            return
        storage.put_file(relative, partial(write_bytes, data=data))
        self._files.delete(relative)
        _remove_empty_folders(os.path.dirname(self._files.path(relative)), self.folder)

    def drain(self, storage: Storage) -> int:
        """Upload every pending file in order; how many went.

        Stops at the first file that fails, leaving it and the later ones spooled, so that
        a writer's run events are never uploaded before the data logged before them.
        """
        uploaded = 0
        for relative in self.pending():
            self.upload(storage, relative)
            uploaded += 1
        return uploaded


def _writer_and_sequence(relative: str) -> tuple[str, str]:
    """Sort key of a spooled file: its writer id, then its sequence number (zero-padded)."""
    name = relative.rsplit("/", 1)[-1].removesuffix(".parquet")
    writer, _, sequence = name.rpartition("-")
    return writer, sequence.rjust(20, "0")


def _remove_empty_folders(folder: str, top: str) -> None:
    while os.path.abspath(folder) != os.path.abspath(top):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)
