"""This process's session: the store and experiment new runs go to, the runs under way,
and what is opened on their behalf.

Scripts, notebooks and tests talk to lakestore through module-level functions
(``lakestore.start_run``, ``lakestore.search_runs``, ...), as with MLflow; those act on the
process's current :class:`Session`, which owns:

- the store and experiment chosen for new runs (``set_store``, ``set_experiment``): the
  store is ``set_store()``'s, else ``$LAKESTORE_URI``, else the folder ``./lakestore-data``;
- the runs started and not yet ended, and the active ones of each thread or task;
- the stores opened, each once, with what was learned of their files (its FileIndex); a
  store opened for writing is created on first use (its format marker written);
- what is opened on the way and closed with the session (a :class:`Resource`): the
  connections module-level reads query (lakestore.reading) and the merges run in the
  background (lakestore.merge).

``lakestore.reset()`` closes the session and starts a new one, as a new process would
start: open runs end ``KILLED``, background merges are waited for, connections close, and
nothing is chosen. A forked child keeps the choices but not the parent's runs or
resources, which are the parent's to end and close.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from typing import Any, Protocol, TypeVar

from lakestore import spec
from lakestore.errors import StoreError
from lakestore.storage import Storage, default_uri, open_storage

logger = logging.getLogger("lakestore")


class OpenRun(Protocol):
    """What the session needs of a run it holds (lakestore.tracking.Run)."""

    run_id: str
    experiment: str

    @property
    def status(self) -> str: ...

    def end(self, status: str = "FINISHED") -> None: ...

    def flush(self) -> None: ...

    def abandon_after_fork(self) -> None: ...


class Resource(Protocol):
    """Something a session opens on demand and closes when it ends."""

    def close(self) -> None:
        """Wait for the work under way, then let go of what is held."""


R = TypeVar("R", bound=Resource)


class Session:
    """What one process has chosen, started and opened (see the module's docstring)."""

    def __init__(self) -> None:
        self.store_uri: str | None = None
        self.store_options: dict[str, Any] = {}
        self.experiment: str | None = None
        self.active_runs: contextvars.ContextVar[tuple[OpenRun, ...]] = contextvars.ContextVar(
            "lakestore_active_runs", default=()
        )
        """The runs active in each thread or asyncio task, innermost last."""
        self.open_runs: set[OpenRun] = set()
        """Runs started and not ended, in any thread: the exit ends them."""
        self.last_active: OpenRun | None = None
        self._opened: dict[tuple[str, str], Storage] = {}
        self._writable: set[Storage] = set()
        self._resources: dict[type[Any], Resource] = {}
        self._lock = threading.Lock()

    def opened(
        self, uri: str | os.PathLike[str] | None = None, options: dict[str, Any] | None = None
    ) -> Storage:
        """The store at ``uri`` (default: the store runs are written to), opened once per
        session and set of options, so that what is learned of its files (its FileIndex)
        serves every reader and writer of it."""
        if uri is None:
            uri = self.uri()
            options = self.store_options if options is None else options
        where = os.fspath(uri)
        if "://" not in where:  # the folder it names now, whatever the working folder later
            where = os.path.abspath(os.path.expanduser(where))
        key = (where, repr(sorted((options or {}).items())))
        with self._lock:
            storage = self._opened.get(key)
            if storage is None:
                storage = self._opened[key] = open_storage(where, options)
        return storage

    def uri(self) -> str:
        """The store that runs started now would write to."""
        return self.store_uri if self.store_uri is not None else default_uri()

    def open_for_writing(
        self, uri: str | os.PathLike[str] | None, options: dict[str, Any] | None
    ) -> Storage:
        """The store at ``uri`` (default: the store runs are written to), created if new;
        checked once per session."""
        storage = self.opened(uri, options)
        with self._lock:
            if storage in self._writable:
                return storage
        try:
            spec.ensure_format_marker(storage)
        except OSError as error:  # a read-only folder, a file in the way, no access
            raise StoreError(
                f"cannot write to store {storage.url}: {error}; log to a store you may "
                "write to (set_store(), $LAKESTORE_URI or store=)"
            ) from None
        with self._lock:
            self._writable.add(storage)
        return storage

    def resource(self, kind: type[R]) -> R:
        """The session's ``kind()``, made on first use and closed with the session."""
        with self._lock:
            found = self._resources.get(kind)
            if found is None:
                found = self._resources[kind] = kind()
        return found  # type: ignore[return-value]

    def close(self) -> None:
        """End the open runs (``KILLED``), then close the resources. A run or resource
        that fails to (its store unreachable) is reported and the others go on."""
        for run in list(self.open_runs):
            try:
                run.end("KILLED")
            except Exception as error:
                logger.error("lakestore could not end run %s: %s", run.run_id, error)
        with self._lock:
            resources = list(self._resources.values())
            self._resources.clear()
        for resource in resources:
            try:
                resource.close()
            except Exception as error:
                logger.error("lakestore could not close %s: %s", type(resource).__name__, error)

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's runs, threads and connections are the parent's,
        never to be ended, written or closed here."""
        self._lock = threading.Lock()
        self._resources = {}
        for run in self.open_runs:
            run.abandon_after_fork()
        self.open_runs = set()
        self.active_runs.set(())
        self.last_active = None


current_session = Session()
"""This process's session; reset() puts a new one here. Read it as
``session.current_session`` (or call current()), never import the name: it is rebound."""


def current() -> Session:
    """This process's session."""
    return current_session


def reset() -> None:
    """Close this process's session and start a new one: open runs end ``KILLED``,
    background merges finish, connections close, and set_store() and set_experiment()
    are forgotten. For notebooks and tests that start over."""
    global current_session
    ended, current_session = current_session, Session()
    ended.close()


def set_store(uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
    """Make ``uri`` the store of runs started from now on.

    ``uri`` is a local folder or any fsspec URL (``s3://bucket/prefix``). Without a call,
    the store is ``$LAKESTORE_URI``, else the folder ``./lakestore-data``.
    """
    current_session.store_uri = os.fspath(uri)
    current_session.store_options = dict(storage_options or {})


def get_store_uri() -> str:
    """The store that runs started now would write to."""
    return current_session.uri()


def get_store_options() -> dict[str, Any]:
    """The storage options given to set_store()."""
    return dict(current_session.store_options)


def opened(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> Storage:
    """The store at ``uri`` as the session opened it (see Session.opened)."""
    return current_session.opened(uri, storage_options)


def open_existing_store(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> Storage:
    """The store at ``uri`` (default: the store runs are written to), which must exist."""
    storage = current_session.opened(uri, storage_options)
    if spec.read_format_version(storage) is None:
        raise StoreError(
            f"no lakestore store at {storage.url}: log a run there first, "
            "or pass the store's location (--store / $LAKESTORE_URI)"
        )
    return storage


def open_for_writing(
    uri: str | os.PathLike[str] | None, storage_options: dict[str, Any] | None
) -> Storage:
    """The store at ``uri`` (default: the store runs are written to), created if new."""
    return current_session.open_for_writing(uri, storage_options)


os.register_at_fork(after_in_child=lambda: current_session._forget_after_fork())
