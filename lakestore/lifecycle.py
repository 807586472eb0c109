"""Deleting, restoring and renaming runs and experiments, experiment tags, and purging
what was deleted (``lakestore gc``).

Each change is one small inbox file of the ``tags`` table, written by a writer of its own:
a tag on the run, or on the experiment's reserved run id (docs/FORMAT.md, "Lifecycle").
Nothing is rewritten until :func:`collect_garbage` purges runs and experiments deleted
more than a grace period ago, so these calls are as safe with many writers and plain
readers as logging a tag is.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from lakestore import spec
from lakestore.errors import ExperimentNotFoundError, InvalidNameError, InvalidValueError

if TYPE_CHECKING:
    from lakestore.query import Store
    from lakestore.storage import Storage

DEFAULT_GC_GRACE = 60.0
"""Seconds a deletion must be old before ``lakestore gc`` purges it (and before it deletes
the files a purge replaced), so that a restore right after a deletion still finds
everything, and queries already running still find their files."""

StoreURI = str | os.PathLike[str] | None


def _storage(store: StoreURI, storage_options: dict[str, Any] | None) -> Storage:
    from lakestore.session import open_existing_store

    return open_existing_store(store, storage_options)


def _write_tags(storage: Storage, experiment: str, run_id: str, tags: dict[str, Any]) -> None:
    """One inbox file of the ``tags`` table holding ``tags`` (a None value deletes the
    tag) for ``run_id``, by a writer of its own: visible whole, or not at all."""
    from lakestore import batches, layout, writer

    if not tags:
        return
    now = int(time.time() * 1_000_000)
    rows = [
        (key, None if value is None else spec.check_text(str(value), f"tag {key!r}"), now)
        for key, value in tags.items()
    ]
    table = batches.rows_table("tags", rows)
    writer_id = spec.new_id()
    path = layout.inbox_path(experiment, "tags", run_id, writer_id, 0)
    content = batches.file_table("tags", table, experiment, run_id, writer_id, 0)
    storage.put_file(path, lambda destination: writer.write_parquet(content, destination))


def _connect(storage: Storage) -> Store:
    from lakestore.query import Store

    return Store(storage)


def _run_experiment(storage: Storage, run_id: str) -> str:
    from lakestore.tracking import _find_run

    spec.check_run_id(run_id)
    return _find_run(storage, run_id)


def delete_run(
    run_id: str, *, store: StoreURI = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Mark the run ``run_id`` deleted: it leaves ``runs``, searches and lists (MLflow's
    ``lifecycle_stage``), until restore_run(). ``lakestore gc`` purges its rows for good
    once it has been deleted for a grace period. RunNotFoundError if there is no such run.
    """
    storage = _storage(store, storage_options)
    _write_tags(storage, _run_experiment(storage, run_id), run_id, {spec.DELETED_TAG: "true"})


def restore_run(
    run_id: str, *, store: StoreURI = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Undo delete_run(): the run is active again (unless ``lakestore gc`` purged it)."""
    storage = _storage(store, storage_options)
    _write_tags(storage, _run_experiment(storage, run_id), run_id, {spec.DELETED_TAG: None})


def rename_run(
    run_id: str,
    name: str,
    *,
    store: StoreURI = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Give the run ``run_id`` the name ``name``: its ``mlflow.runName`` tag, as in MLflow."""
    spec.check_text(name, "run name")
    if not name:
        raise InvalidNameError("a run's new name must not be empty")
    storage = _storage(store, storage_options)
    _write_tags(storage, _run_experiment(storage, run_id), run_id, {spec.RUN_NAME_TAG: name})


class ExperimentState(NamedTuple):
    """An experiment as its id and its current name and stage."""

    experiment_id: str
    name: str
    lifecycle_stage: str


def _rows(store: Store, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return store._run(query, params, lambda relation: relation.fetchall())


def _experiments(storage: Storage) -> list[ExperimentState]:
    query = "SELECT experiment, name, lifecycle_stage FROM all_experiments ORDER BY experiment"
    with _connect(storage) as store:
        return [ExperimentState(*row) for row in _rows(store, query)]


def find_experiment(
    storage: Storage, experiment: str, known: list[ExperimentState] | None = None
) -> ExperimentState:
    """The experiment whose id is ``experiment``, else the one of that name (an experiment
    keeps as id the name it was created with), among ``known`` (default: the store's);
    ExperimentNotFoundError if none is."""
    if known is None:
        known = _experiments(storage)
    for wanted in ("experiment_id", "name"):
        for state in known:
            if getattr(state, wanted) == experiment:
                return state
    names = ", ".join(sorted(repr(state.name) for state in known)[:20]) or "none"
    raise ExperimentNotFoundError(
        f"no experiment {experiment!r} in store {storage.url}; its experiments: {names}"
    )


def experiment_id(storage: Storage, experiment: str) -> str:
    """The id of the experiment whose id or name is ``experiment`` (ExperimentNotFoundError
    if none): an experiment's folder is named by its id, so an id costs one small listing."""
    from lakestore import layout

    if storage.list_folders(layout.experiment_folder(spec.check_experiment_name(experiment))):
        return experiment
    return find_experiment(storage, experiment).experiment_id


def _set_experiment_tags(
    experiment: str,
    tags: dict[str, Any],
    store: StoreURI,
    storage_options: dict[str, Any] | None,
) -> None:
    storage = _storage(store, storage_options)
    _write_tags(storage, experiment_id(storage, experiment), spec.EXPERIMENT_RUN, tags)


def delete_experiment(
    experiment: str, *, store: StoreURI = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Mark the experiment (by id or name) deleted, with all its runs, until
    restore_experiment(); ``lakestore gc`` removes its folder once it has been deleted for a
    grace period. Runs logged to it meanwhile are deleted with it."""
    _set_experiment_tags(experiment, {spec.DELETED_TAG: "true"}, store, storage_options)


def restore_experiment(
    experiment: str, *, store: StoreURI = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Undo delete_experiment(): the experiment and its runs are active again (runs deleted
    one by one stay deleted)."""
    _set_experiment_tags(experiment, {spec.DELETED_TAG: None}, store, storage_options)


def rename_experiment(
    experiment: str,
    new_name: str,
    *,
    store: StoreURI = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Give the experiment (by id or name) the name ``new_name`` in lists and searches.
    Its id stays the name it was created with: its folder, and what ``start_run(
    experiment=...)`` takes. Refused if another experiment has that id or name."""
    spec.check_experiment_name(new_name)
    storage = _storage(store, storage_options)
    known = _experiments(storage)
    target = find_experiment(storage, experiment, known)
    for other in known:
        if other.experiment_id != target.experiment_id and new_name in (
            other.experiment_id,
            other.name,
        ):
            raise InvalidNameError(
                f"cannot rename experiment {target.name!r} to {new_name!r}: experiment "
                f"{other.experiment_id!r} has that name already; rename or delete it first"
            )
    _write_tags(
        storage, target.experiment_id, spec.EXPERIMENT_RUN, {spec.EXPERIMENT_NAME_TAG: new_name}
    )


def set_experiment_tags(
    tags: dict[str, Any],
    *,
    experiment: str | None = None,
    store: StoreURI = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Set tags on the experiment itself (default: the current one, see set_experiment()),
    creating it if it has no run yet. A None value deletes the tag."""
    from lakestore.tracking import current_experiment

    for key in tags:
        spec.check_key(key, "tag")
        if key.startswith(spec.RESERVED_TAG_PREFIX):
            raise InvalidNameError(
                f"tag key {key!r} is reserved: keys starting with "
                f"{spec.RESERVED_TAG_PREFIX!r} are lakestore's own"
            )
    from lakestore.session import open_for_writing

    name = current_experiment() if experiment is None else experiment
    storage = open_for_writing(store, storage_options)  # created if new, as by start_run
    with contextlib.suppress(ExperimentNotFoundError):  # else a new experiment, from now on
        name = experiment_id(storage, name)
    _write_tags(storage, spec.check_experiment_name(name), spec.EXPERIMENT_RUN, tags)


def set_experiment_tag(
    key: str,
    value: Any,
    *,
    experiment: str | None = None,
    store: StoreURI = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Set one tag on the experiment itself (see set_experiment_tags())."""
    set_experiment_tags(
        {key: value}, experiment=experiment, store=store, storage_options=storage_options
    )


# -- purging ---------------------------------------------------------------------------------


class Purged(NamedTuple):
    """What one ``lakestore gc`` removed."""

    runs: int
    """Runs deleted for longer than the grace period whose rows were purged."""
    experiments: int
    """Experiments deleted for longer than the grace period whose folders were removed."""
    files: int
    """Files deleted: those of purged experiments, and those that no snapshot of the last
    ``grace`` seconds needs (what purges and merges replaced)."""


def collect_garbage(
    store: StoreURI = None,
    storage_options: dict[str, Any] | None = None,
    *,
    grace: float = DEFAULT_GC_GRACE,
    progress: Callable[[int, int], None] | None = None,
) -> Purged:
    """Purge, for good, the experiments and runs deleted more than ``grace`` seconds ago:
    remove a deleted experiment's folder; rewrite the parts that hold a deleted run's rows
    without them (publishing a new snapshot, as a merge does), and delete its inbox files.
    Then delete the files no snapshot of the last ``grace`` seconds needs (the parts just
    replaced go ``grace`` seconds after the purge: with ``grace=0``, at once).
    ``progress(done, total)`` is called after each experiment.
    """
    from lakestore import layout, merge

    if not grace >= 0:
        raise InvalidValueError(f"grace must be seconds >= 0, got {grace!r}")
    storage = _storage(store, storage_options)
    expired = "now() - to_microseconds(($grace * 1e6)::BIGINT)"
    with _connect(storage) as opened, opened._one_listing():  # one listing for the three
        doomed = dict(
            _rows(
                opened,
                "SELECT experiment, lifecycle_stage = 'deleted' AND deleted_time < "
                f"{expired} FROM all_experiments",
                {"grace": grace},
            )
        )
        deleted_runs = _rows(
            opened,
            f"SELECT experiment, run_id FROM tag_states WHERE key = '{spec.DELETED_TAG}' "
            f"AND run_id <> '{spec.EXPERIMENT_RUN}' AND timestamp < {expired}",
            {"grace": grace},
        )
        # A purged run keeps its deletion tag alone: it is counted while it still has rows.
        with_rows = {run_id for (run_id,) in _rows(opened, "SELECT run_id FROM all_runs")}
    purged_runs: dict[str, set[str]] = {}
    for experiment, run_id in deleted_runs:
        if not doomed.get(experiment):
            purged_runs.setdefault(experiment, set()).add(run_id)
    files = runs_purged = experiments_purged = 0
    for done, (experiment, deleted) in enumerate(sorted(doomed.items()), start=1):
        folder = layout.experiment_folder(experiment)
        if deleted:
            files += storage.delete_folder(folder)
            experiments_purged += 1
        else:
            chosen = purged_runs.get(experiment, set())
            if chosen:
                merge.purge_runs(storage, folder, chosen)
                runs_purged += len(chosen & with_rows)
            found = layout.list_experiments(storage, folder).get(folder)
            if found is not None:
                files += merge.collect_garbage(storage, found, grace)
        if progress is not None:
            progress(done, len(doomed))
    return Purged(runs_purged, experiments_purged, files)
