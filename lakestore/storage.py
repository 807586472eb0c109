"""Where a store lives: a local folder, or any filesystem fsspec reaches.

This is the one module that knows about storage backends. A plain path (or ``file://``) is
served with ``os`` calls, which keeps ``import lakestore`` free of fsspec for local stores;
every other URL goes through fsspec, imported on first use.

Both backends guarantee that a reader never sees a partial file: a local file is written
under a temporary name beside its target and renamed over it; on object stores a file is
one PUT (or one multipart upload), which readers see whole or not at all.
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import io
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from lakestore.errors import StoreError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

DEFAULT_URI = "lakestore-data"
"""The store used when neither set_store() nor $LAKESTORE_URI names one: ./lakestore-data.

Not ./lakestore, which in a checkout of this project is the package itself."""


TEMPORARY_PREFIX = "."
"""Local files being written start with this and end in ``.tmp``: readers skip them."""


def default_uri() -> str:
    """The store named by $LAKESTORE_URI, else the folder ./lakestore-data."""
    return os.environ.get("LAKESTORE_URI") or DEFAULT_URI


class FileInfo(NamedTuple):
    """What a listing tells of a file: its size in bytes and when it was written."""

    size: int
    modified: float
    """Seconds since the epoch, by the clock of the filesystem or object store."""


class Staged(NamedTuple):
    """A file written in full where readers cannot see it yet (see Storage.stage_file)."""

    relative: str
    held: bytes | str
    """Its content (object stores), or the temporary file that holds it (local folders)."""


FETCHED_BYTES = 512 * 1024 * 1024
"""How much memory the rows of fetched files are kept in, for the next query to reuse."""


class FileIndex:
    """What this process has learned of a store's files, which never change once written:
    the ones readers skip (and why), the ones whose footer was found sound, and the rows
    of fetched files, least recently used first, up to FETCHED_BYTES (lakestore.files)."""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self.sound: set[str] = set()
        self._rows: OrderedDict[str, pa.Table] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def kept_rows(self, path: str) -> pa.Table | None:
        """The rows of ``path`` kept from an earlier fetch, or None."""
        with self._lock:
            if path not in self._rows:
                return None
            self._rows.move_to_end(path)
            return self._rows[path]

    def keep_rows(self, path: str, rows: pa.Table) -> None:
        """Keep the rows of the fetched file ``path`` for later reads."""
        with self._lock:
            if path in self._rows:
                return
            self._rows[path] = rows
            self._size += rows.nbytes
            while self._size > FETCHED_BYTES:
                _, dropped = self._rows.popitem(last=False)
                self._size -= dropped.nbytes


class Storage(ABC):
    """A store root and the few file operations lakestore needs, paths relative to it.

    Opened once per session and store (lakestore.session), it also holds the store's
    :class:`FileIndex`."""

    def __init__(self) -> None:
        self.index = FileIndex()

    url: str
    """The root as readers name it: an absolute local path or a ``protocol://`` URL."""

    remote: bool
    """Whether each file operation is a request over a network. It then costs a round
    trip whatever its size, so callers write several files at once, fetch small files
    whole and spare requests where they can; and it may fail while the store is
    unreachable, so writers keep such files in a local spool (lakestore.spool)."""

    def register_in(self, connection: duckdb.DuckDBPyConnection) -> None:  # noqa: B027
        """Let DuckDB's ``connection`` read this store's paths (it reads local ones)."""

    def folders_named_like_files(self, prefix: str, suffix: str) -> list[str]:
        """The folders under ``prefix`` whose name ends with ``suffix``: a glob for such
        files takes them too. Object stores have none (a key prefix is not a file)."""
        return []

    def path(self, relative: str) -> str:
        """The full path (as readers name it) of ``relative``."""
        return f"{self.url}/{relative}"

    @abstractmethod
    def put_file(
        self, relative: str, write: Callable[[str | BinaryIO], None], *, exclusive: bool = False
    ) -> bool:
        """Create ``relative`` with ``write(destination)``; readers see all of it or nothing.

        ``destination`` is a local path or a binary file object: what ``pyarrow.parquet``
        and most writers accept. A file that already exists is replaced, unless
        ``exclusive``: then it is kept, and this returns False (of several processes
        creating one name at once, exactly one gets True).
        """

    def stage_files(
        self, files: list[tuple[str, Callable[[str | BinaryIO], None]]]
    ) -> list[Staged | Exception]:
        """Write each file ``(relative, write)`` with ``write(destination)`` where readers
        cannot see it yet; :meth:`put_staged` then makes it visible, whole. Staging files
        together and putting them in order makes them durable together (in a local folder,
        one fsync after another once all are written, the cheapest way) and visible in
        that order. Each file's staged form, or the error that kept it from being staged.
        """
        staged: list[Staged | Exception] = []
        for relative, write in files:
            buffer = io.BytesIO()
            try:
                write(buffer)
            except Exception as error:
                staged.append(error)
            else:
                staged.append(Staged(relative, buffer.getvalue()))
        return staged

    def stage_file(self, relative: str, write: Callable[[str | BinaryIO], None]) -> Staged:
        """One file staged (see :meth:`stage_files`); raises what kept it from being staged."""
        (staged,) = self.stage_files([(relative, write)])
        if isinstance(staged, Exception):
            raise staged
        return staged

    def put_staged(self, staged: Staged) -> None:
        """Make a staged file visible under its name (replacing any file of that name)."""
        content = staged.held
        assert isinstance(content, bytes)
        self.put_file(staged.relative, lambda destination: write_bytes(destination, content))

    def drop_staged(self, staged: Staged) -> None:  # noqa: B027 (staged in memory)
        """Forget a staged file that will not be put."""

    def put_if_absent(self, relative: str, data: bytes) -> bool:
        """Write ``data`` as ``relative`` unless it exists; True if this call wrote it."""
        return self.put_file(
            relative, lambda destination: write_bytes(destination, data), exclusive=True
        )

    def remove_temporary(self, older_than: float) -> int:
        """Remove temporary files last written over ``older_than`` seconds ago (a killed
        writer leaves them); returns how many. Object stores have none: a file is one PUT."""
        return 0

    @abstractmethod
    def get(self, relative: str) -> bytes | None:
        """The content of ``relative``, or None if there is no such file."""

    @abstractmethod
    def glob(self, pattern: str) -> list[str]:
        """The relative paths matching ``pattern`` (``*`` within one path segment)."""

    @abstractmethod
    def list_files(self, prefix: str, start: str = "") -> dict[str, FileInfo]:
        """Every file under the folder ``prefix``, at any depth, with its size and time:
        one listing (an object store pages through it, a thousand names a request).
        With ``start``, only the files whose path below ``prefix`` starts with it (an
        object store lists only those). Files being written (local temporary files) are
        left out."""

    @abstractmethod
    def list_folders(self, prefix: str) -> list[str]:
        """The names of the folders directly in the folder ``prefix`` (one request)."""

    def list_names(self, prefix: str, start: str = "") -> dict[str, FileInfo | None]:
        """Every file under the folder ``prefix``, as :meth:`list_files` finds them, with
        what the listing tells of each for free: an object store's listing gives sizes and
        times; a local folder's would cost a ``stat`` a file, most of the cost of listing
        thousands of files, so there the value is None (:meth:`file_infos` reads it).

        Folders are listed in name order, as an object store lists keys, so that an
        experiment's inbox is listed before its snapshots, as the read protocol needs
        (lakestore.layout)."""
        return dict(self.list_files(prefix, start))

    def file_infos(self, paths: list[str]) -> dict[str, FileInfo]:
        """The size and time of each file of ``paths`` that exists."""
        listed: dict[str, FileInfo] = {}
        for folder in {path.rsplit("/", 1)[0] for path in paths}:
            listed.update(self.list_files(folder))
        return {path: listed[path] for path in paths if path in listed}

    def get_many(self, paths: list[str]) -> dict[str, bytes | None]:
        """The contents of ``paths`` (None for a file that does not exist), fetched
        concurrently where the backend can."""
        return {path: self.get(path) for path in paths}

    @abstractmethod
    def open_read(self, relative: str) -> BinaryIO:
        """``relative`` opened for reading, seekable (Parquet readers read the footer first)."""

    @abstractmethod
    def delete(self, relative: str) -> None:
        """Remove ``relative``; a file already gone is fine."""

    def delete_many(self, paths: list[str]) -> None:
        """Remove ``paths`` (files already gone are fine), in batches where the backend can."""
        for path in paths:
            self.delete(path)

    def delete_folder(self, prefix: str) -> int:
        """Remove every file under the folder ``prefix`` (and, in a local folder, the
        folders left empty); returns how many files were removed."""
        found = list(self.list_names(prefix))
        self.delete_many(found)
        return len(found)


class LocalStorage(Storage):
    """A store in a local folder."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.url = os.path.abspath(os.path.expanduser(root))
        self.remote = False
        if os.path.exists(self.url) and not os.path.isdir(self.url):
            raise StoreError(f"store path {self.url!r} is a file, not a folder")

    def put_file(
        self, relative: str, write: Callable[[str | BinaryIO], None], *, exclusive: bool = False
    ) -> bool:
        staged = self.stage_file(relative, write)
        try:
            if not exclusive:
                self.put_staged(staged)
                return True
            os.utime(staged.held)  # the file's age is counted from when it appears
            try:
                os.link(staged.held, self.path(relative))  # fails if it exists: exclusive, whole
            except FileExistsError:
                return False
            return True
        finally:
            self.drop_staged(staged)

    def stage_files(
        self, files: list[tuple[str, Callable[[str | BinaryIO], None]]]
    ) -> list[Staged | Exception]:
        staged: list[Staged | Exception] = []
        written: list[tuple[int, io.BufferedWriter, str]] = []
        for relative, write in files:
            folder, name = os.path.split(self.path(relative))
            temporary = os.path.join(folder, f"{TEMPORARY_PREFIX}{name}.{uuid.uuid4().hex}.tmp")
            try:
                with contextlib.ExitStack() as on_error:
                    file = os.fdopen(_create_in_folder(temporary), "wb")
                    on_error.callback(_remove_quietly, temporary)
                    on_error.callback(file.close)
                    write(file)
                    file.flush()
                    on_error.pop_all()
            except Exception as error:
                staged.append(error)
                continue
            written.append((len(staged), file, temporary))
            staged.append(Staged(relative, temporary))
        for index, file, temporary in written:  # all written first: cheaper fsyncs
            try:
                os.fsync(file.fileno())
            except OSError as error:
                _remove_quietly(temporary)
                staged[index] = error
            finally:
                file.close()
        return staged

    def put_staged(self, staged: Staged) -> None:
        assert isinstance(staged.held, str)
        os.utime(staged.held)  # the file's age is counted from when it appears
        os.replace(staged.held, self.path(staged.relative))

    def drop_staged(self, staged: Staged) -> None:
        assert isinstance(staged.held, str)
        _remove_quietly(staged.held)

    def get(self, relative: str) -> bytes | None:
        try:
            with open(self.path(relative), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def glob(self, pattern: str) -> list[str]:
        start = len(self.url) + 1
        return sorted(path[start:] for path in glob.glob(glob.escape(self.url) + "/" + pattern))

    def list_files(self, prefix: str, start: str = "") -> dict[str, FileInfo]:
        return self.file_infos(list(self.list_names(prefix, start)))

    def list_folders(self, prefix: str) -> list[str]:
        try:
            with os.scandir(self.path(prefix)) as entries:
                return sorted(entry.name for entry in entries if entry.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_names(self, prefix: str, start: str = "") -> dict[str, FileInfo | None]:
        found: dict[str, FileInfo | None] = {}
        cut = len(self.url) + 1
        for folder, folders, names in os.walk(self.path(prefix)):
            relative = folder[cut:]
            if start and relative == prefix:  # the top folder: only what starts with start
                folders[:] = [name for name in folders if name.startswith(start)]
                names = [name for name in names if name.startswith(start)]
            folders.sort()
            for name in names:
                if not name.startswith(TEMPORARY_PREFIX):
                    found[f"{relative}/{name}"] = None
        return found

    def file_infos(self, paths: list[str]) -> dict[str, FileInfo]:
        infos: dict[str, FileInfo] = {}
        for path in paths:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                status = os.stat(self.path(path))
                infos[path] = FileInfo(status.st_size, status.st_mtime)
        return infos

    def open_read(self, relative: str) -> BinaryIO:
        return open(self.path(relative), "rb")

    def remove_temporary(self, older_than: float) -> int:
        removed = 0
        cutoff = time.time() - older_than
        for folder, _, names in os.walk(self.url):
            for name in names:
                if not (name.startswith(TEMPORARY_PREFIX) and name.endswith(".tmp")):
                    continue
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.path.getmtime(path) < cutoff:
                        os.remove(path)
                        removed += 1
        return removed

    def delete(self, relative: str) -> None:
        _remove_quietly(self.path(relative))

    def folders_named_like_files(self, prefix: str, suffix: str) -> list[str]:
        cut = len(self.url) + 1
        return [
            os.path.join(folder, name)[cut:]
            for folder, names, _ in os.walk(self.path(prefix))
            for name in names
            if name.endswith(suffix)
        ]

    def delete_folder(self, prefix: str) -> int:
        removed = super().delete_folder(prefix)
        for folder, _, _ in sorted(os.walk(self.path(prefix)), reverse=True):
            with contextlib.suppress(OSError):  # not empty: a writer still writes there
                os.rmdir(folder)
        return removed


class FsspecStorage(Storage):
    """A store on any filesystem fsspec reaches, written as an object store: one PUT a file."""

    def __init__(self, uri: str, storage_options: dict[str, Any]) -> None:
        from fsspec.core import url_to_fs

        super().__init__()
        protocol = uri.split("://", 1)[0]
        options = dict(storage_options)
        if protocol in ("s3", "s3a"):
            # New files must be visible to the next listing; see docs/FORMAT.md.
            options.setdefault("use_listings_cache", False)
        self.remote = True
        try:
            self._fs, root = url_to_fs(uri, **options)
        except (ImportError, ValueError) as error:
            raise StoreError(f"cannot open store {uri!r}: {error}") from error
        root = root.rstrip("/")
        self._root = root
        self._find_takes_prefix = "prefix" in inspect.signature(self._fs.find).parameters
        self.url = f"{protocol}://{root}"
        # s3fs asks for a file's size (a HEAD) before each whole-file GET, to split large
        # files across connections; the files read whole here are small, one GET each.
        reader = getattr(self._fs, "_cat_file", self._fs.cat_file)
        self._whole_file: dict[str, Any] = (
            {"max_concurrency": 1}
            if "max_concurrency" in inspect.signature(reader).parameters
            else {}
        )

    def _full(self, relative: str) -> str:
        return f"{self._root}/{relative}"

    def register_in(self, connection: duckdb.DuckDBPyConnection) -> None:
        connection.register_filesystem(self._fs)

    def put_file(
        self, relative: str, write: Callable[[str | BinaryIO], None], *, exclusive: bool = False
    ) -> bool:
        # Whole in memory, then one upload: a file object opened on the store would make a
        # partial file visible if writing failed half-way.
        buffer = io.BytesIO()
        write(buffer)
        try:
            self._fs.pipe_file(
                self._full(relative),
                buffer.getvalue(),
                mode="create" if exclusive else "overwrite",
            )
        except FileExistsError:
            return False
        return True

    def get(self, relative: str) -> bytes | None:
        try:
            return self._fs.cat_file(self._full(relative), **self._whole_file)
        except FileNotFoundError:
            return None

    def glob(self, pattern: str) -> list[str]:
        start = len(self._root) + 1
        return sorted(path[start:] for path in self._fs.glob(self._full(pattern)))

    def list_files(self, prefix: str, start: str = "") -> dict[str, FileInfo]:
        cut = len(self._root) + 1
        # s3fs lists only the keys under a prefix; other filesystems list all, then filter.
        narrowed = {"prefix": start} if start and self._find_takes_prefix else {}
        try:
            found = self._fs.find(self._full(prefix), detail=True, **narrowed)
        except FileNotFoundError:
            return {}
        listing = {}
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            if start and not path[cut + len(prefix) + 1 :].startswith(start):
                continue
            modified = info.get("LastModified") or info.get("mtime") or info.get("created")
            seconds = modified.timestamp() if hasattr(modified, "timestamp") else modified
            listing[path[cut:]] = FileInfo(int(info.get("size") or 0), float(seconds or 0.0))
        return listing

    def list_folders(self, prefix: str) -> list[str]:
        try:
            found = self._fs.ls(self._full(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            info["name"].rstrip("/").rsplit("/", 1)[-1]
            for info in found
            if info.get("type") == "directory"
        )

    def get_many(self, paths: list[str]) -> dict[str, bytes | None]:
        if not paths:
            return {}
        fetched = self._fs.cat(
            [self._full(path) for path in paths], on_error="return", **self._whole_file
        )
        contents: dict[str, bytes | None] = {}
        for path in paths:
            data = fetched.get(self._full(path))
            if isinstance(data, FileNotFoundError):
                contents[path] = None
            elif isinstance(data, BaseException):
                raise data
            else:
                contents[path] = data
        return contents

    def open_read(self, relative: str) -> BinaryIO:
        return self._fs.open(self._full(relative), "rb")  # type: ignore[no-any-return]

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._full(relative))

    def delete_many(self, paths: list[str]) -> None:
        if paths:
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm([self._full(path) for path in paths])


def open_storage(
    uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> Storage:
    """The storage for ``uri``: a local path, ``file://`` URL, or any fsspec URL.

    ``storage_options`` go to the fsspec filesystem (for S3: ``key``, ``secret``,
    ``endpoint_url``, ...); without them s3fs reads the standard AWS environment variables,
    ``AWS_ENDPOINT_URL`` included.
    """
    text = os.fspath(uri)
    if "://" not in text:
        storage: Storage = LocalStorage(text)
    elif text.startswith("file://"):
        storage = LocalStorage(text[len("file://") :])
    else:
        storage = FsspecStorage(text, storage_options or {})
    for segment in storage.url.split("://")[-1].split("/"):
        if "=" in segment:
            # Hive readers take every key=value folder in a path for a partition column.
            raise StoreError(
                f"store path {storage.url!r} has a folder named {segment!r}; readers would "
                "take it for a partition column: put the store in a folder without '='"
            )
    return storage


def write_bytes(destination: str | BinaryIO, data: bytes | memoryview) -> None:
    """Write ``data`` to ``destination``, a path or a binary file (a ``put_file`` writer)."""
    if isinstance(destination, str):
        with open(destination, "wb") as file:
            file.write(data)
    else:
        destination.write(data)


def _create_in_folder(path: str) -> int:
    """Create the empty file ``path`` (and its folder, even if another process removes
    the folder meanwhile); its descriptor, open for writing."""
    for _ in range(10):
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
    raise StoreError(f"cannot create {path}: its folder keeps vanishing")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
