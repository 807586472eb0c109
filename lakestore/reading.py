"""Reading runs and experiments back, as MLflow's fluent API does.

``lakestore.get_run(run_id)``, ``lakestore.search_runs(...)``,
``lakestore.get_metric_history(run_id, key)``, ``lakestore.get_experiment_by_name(name)``
and ``lakestore.search_experiments()`` answer from the store runs are written to (or
``store=``) without a ``Store`` to open and close: each process keeps one open per store
and reads the files live at each call. A run and an experiment come back as plain
records (:class:`RunRecord`, :class:`ExperimentRecord`); searches and histories as DuckDB
relations, as :class:`lakestore.Store` gives them.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakestore import search
from lakestore.errors import RunNotFoundError
from lakestore.search import ViewType
from lakestore.session import current, get_store_options, get_store_uri

if TYPE_CHECKING:
    import duckdb

    from lakestore.query import Store
    from lakestore.storage import Storage


@dataclass(frozen=True)
class RunRecord:
    """One run as the store holds it now: attributes, params, latest metrics and tags."""

    run_id: str
    experiment: str
    run_name: str | None
    status: str
    parent_run_id: str | None
    user: str | None
    host: str | None
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    """The latest value of each metric (greatest step, then latest timestamp)."""
    tags: dict[str, str] = field(default_factory=dict)
    lifecycle_stage: str = "active"
    """``active``, or ``deleted`` (by delete_run(), or with its experiment)."""


@dataclass(frozen=True)
class ExperimentRecord:
    """One experiment: its name, its id (the name it was created with, which renaming
    leaves as it is), its stage, its tags and its runs (those not deleted one by one)."""

    name: str
    runs: int
    first_start: dt.datetime | None
    last_start: dt.datetime | None
    experiment_id: str = ""
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)


def run_record(store: Store, run_id: str) -> RunRecord:
    """The run ``run_id`` of ``store``; RunNotFoundError if the store has no such run."""
    attributes = store._run(
        'SELECT experiment, run_id, run_name, status, parent_run_id, "user", host, '
        "start_time, end_time, lifecycle_stage FROM all_runs WHERE run_id = $id",
        {"id": run_id},
        lambda relation: relation.fetchall(),
        runs=[run_id],
    )
    if not attributes:
        raise RunNotFoundError(f"no run {run_id!r} in store {store.storage.url}")
    [(experiment, _, name, status, parent, user, host, start, end, stage)] = attributes
    keyed = store._run(
        "SELECT 'params', key, value, NULL FROM params WHERE run_id = $id "
        "UNION ALL SELECT 'tags', key, value, NULL FROM tags WHERE run_id = $id "
        "UNION ALL SELECT 'metrics', key, NULL, latest FROM metric_summary WHERE run_id = $id",
        {"id": run_id},
        lambda relation: relation.fetchall(),
        runs=[run_id],
    )
    sections: dict[str, dict[str, Any]] = {"params": {}, "tags": {}, "metrics": {}}
    for section, key, text, number in keyed:
        sections[section][key] = number if section == "metrics" else text
    return RunRecord(
        run_id, experiment, name, status, parent, user, host, start, end, **sections,
        lifecycle_stage=stage,
    )  # fmt: skip


def experiment_records(
    store: Store, name: str | None = None, view_type: ViewType = "active_only"
) -> list[ExperimentRecord]:
    """The experiments of ``store`` in ``view_type`` (``active_only``, ``deleted_only`` or
    ``all``), by name; with ``name``, the one of that name, whatever its stage."""
    stages = search.lifecycle_stages("all" if name is not None else view_type)
    rows = store._run(
        "SELECT name, runs, first_start, last_start, experiment, lifecycle_stage, tags "
        "FROM all_experiments WHERE ($name IS NULL OR name = $name) "
        "AND list_contains($stages, lifecycle_stage) ORDER BY name",
        {"name": name, "stages": stages},
        lambda relation: relation.fetchall(),
    )
    return [ExperimentRecord(*row) for row in rows]


# -- the module-level functions -------------------------------------------------------------


class Readers:
    """The Stores the module-level read functions query, one per store, opened on first
    use and closed with the session (a :class:`~lakestore.session.Resource`). A Store is
    one DuckDB connection: the lock lets one thread at a time use them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._open: dict[Storage, Store] = {}

    def store(self, store: str | os.PathLike[str] | None) -> Store:
        """The open Store of ``store`` (default: the store runs are written to); use it
        holding ``lock``."""
        from lakestore.query import connect

        uri, options = (get_store_uri(), get_store_options()) if store is None else (store, {})
        storage = current().opened(uri, options)
        with self.lock:
            opened = self._open.get(storage)
            if opened is None:
                opened = self._open[storage] = connect(storage.url, options)
            return opened

    def close(self) -> None:
        with self.lock:
            for opened in self._open.values():
                opened.close()
            self._open.clear()


def _reading(store: str | os.PathLike[str] | None) -> tuple[Store, threading.Lock]:
    """The session's open Store of ``store``, and the lock to hold while using it."""
    readers = current().resource(Readers)
    return readers.store(store), readers.lock


def get_run(run_id: str, *, store: str | os.PathLike[str] | None = None) -> RunRecord:
    """The run ``run_id`` as the store holds it now (RunNotFoundError if it has none)."""
    opened, lock = _reading(store)
    with lock:
        return run_record(opened, run_id)


def search_runs(
    filter_string: str | None = None,
    *,
    order_by: list[str] | None = None,
    max_results: int | None = 1000,
    experiments: list[str] | None = None,
    view_type: ViewType = "active_only",
    store: str | os.PathLike[str] | None = None,
) -> duckdb.DuckDBPyRelation:
    """Runs matching an MLflow filter: :meth:`lakestore.Store.search_runs` on the store
    runs are written to (or ``store``)."""
    opened, lock = _reading(store)
    with lock:
        return opened.search_runs(
            filter_string,
            order_by=order_by,
            max_results=max_results,
            experiments=experiments,
            view_type=view_type,
        )


def get_metric_history(
    run_id: str, key: str, *, store: str | os.PathLike[str] | None = None
) -> duckdb.DuckDBPyRelation:
    """Every logged point of metric ``key`` of run ``run_id``, in step order."""
    opened, lock = _reading(store)
    with lock:
        return opened.metric_history(run_id, key)


def get_experiment_by_name(
    name: str, *, store: str | os.PathLike[str] | None = None
) -> ExperimentRecord | None:
    """The experiment named ``name`` (deleted or not), or None if the store has none."""
    opened, lock = _reading(store)
    with lock:
        found = experiment_records(opened, name)
    return found[0] if found else None


def search_experiments(
    *, view_type: ViewType = "active_only", store: str | os.PathLike[str] | None = None
) -> list[ExperimentRecord]:
    """The experiments of the store in ``view_type`` (``active_only``, ``deleted_only`` or
    ``all``), by name."""
    opened, lock = _reading(store)
    with lock:
        return experiment_records(opened, view_type=view_type)
