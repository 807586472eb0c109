"""Importing tracking data from MLflow into a lakestore store.

``import_mlflow(uri)`` reads an MLflow tracking store, an SQLite database
(``sqlite:///mlflow.db``) or a file store (an ``mlruns/`` folder), and writes its runs to
the lakestore store with their ids, names, statuses, start and end times, parent runs,
users, params, tags (MLflow's system tags included) and full metric histories with their
timestamps. SQLite databases are read directly, in one pass per table: MLflow's client
would fetch each run's each metric history with its own query. Runs the store already
holds are skipped, so that importing again duplicates nothing and adds the runs logged
since. Deleted runs and experiments (MLflow's ``lifecycle_stage``) are left out.

Each imported run is written as a run of its own writer: one file per table, as a run
that logged everything at once would leave (docs/FORMAT.md).
"""

from __future__ import annotations

import array
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from lakestore import format
from lakestore.errors import ImportSourceError, LakestoreError
from lakestore.stores import open_for_writing

if TYPE_CHECKING:
    from lakestore.storage import Storage


_STATUSES = {"SCHEDULED": "RUNNING"}
"""MLflow's run statuses lakestore lacks, as lakestore records them (a run scheduled and
never heard of again becomes CRASHED, as any run whose writer went silent)."""

_FILE_STORE_STATUSES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


@dataclass
class SourceRun:
    """One run read from another tracker, in lakestore's terms (times in milliseconds)."""

    run_id: str
    experiment: str
    run_name: str | None
    status: str
    user: str | None
    start_ms: int | None
    end_ms: int | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metric_keys: list[str] = field(default_factory=list)
    metric_key_codes: array.array[int] = field(default_factory=lambda: array.array("i"))
    metric_values: array.array[float] = field(default_factory=lambda: array.array("d"))
    metric_steps: array.array[int] = field(default_factory=lambda: array.array("q"))
    metric_times_ms: array.array[int] = field(default_factory=lambda: array.array("q"))

    @property
    def parent_run_id(self) -> str | None:
        return self.tags.get("mlflow.parentRunId")


class ImportSummary(NamedTuple):
    """What an import did."""

    imported: int
    """Runs written to the store."""
    already_there: int
    """Runs the store held already, left as they are."""
    deleted: int
    """Runs MLflow had deleted, left out."""
    metric_points: int
    """Metric rows written."""


Progress = Callable[[int, int], None]
"""Told (runs done, runs in all) as runs are imported."""


def import_mlflow(
    uri: str,
    *,
    store: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import the MLflow tracking store at ``uri`` (``sqlite:///path``, a path to an
    ``.db`` file, an ``mlruns`` folder or a ``file:`` URL of one) into the lakestore
    store ``store`` (default: the store runs are written to)."""
    source = _mlflow_source(uri)
    storage = open_for_writing(store, storage_options)
    present = _runs_in(storage)
    total, deleted, runs = source
    return _write_all(storage, runs, total, deleted, present, progress)


def _mlflow_source(uri: str) -> tuple[int, int, Iterator[SourceRun]]:
    if uri.startswith(("http://", "https://")):
        raise ImportSourceError(
            f"{uri} is an MLflow server; lakestore imports its database or mlruns folder: "
            "run `lakestore import mlflow` on the server's --backend-store-uri"
        )
    path = uri
    for prefix in ("sqlite:///", "file://", "file:"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    if os.path.isdir(path):
        return _file_store(path)
    if os.path.isfile(path):
        return _sqlite_store(path)
    raise ImportSourceError(
        f"no MLflow store at {uri!r}: give an sqlite:/// URI or an mlruns folder"
    )


def _runs_in(storage: Storage) -> set[str]:
    from lakestore.query import connect

    if format.read_format_version(storage) is None:
        return set()
    with connect(storage.url) as opened:
        return {run_id for (run_id,) in opened.sql("SELECT run_id FROM runs").fetchall()}


# -- MLflow's SQLite store -------------------------------------------------------------------


def _sqlite_store(path: str) -> tuple[int, int, Iterator[SourceRun]]:
    try:
        database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {name for (name,) in database.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        raise ImportSourceError(f"{path} is not an SQLite database ({error})") from None
    if not {"runs", "experiments", "metrics", "params", "tags"} <= tables:
        raise ImportSourceError(f"{path} is not an MLflow tracking database (no runs table)")
    live = (
        "FROM runs r JOIN experiments e USING (experiment_id) "
        "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'"
    )
    [(total,)] = database.execute(f"SELECT count(*) {live}").fetchall()
    [(every,)] = database.execute("SELECT count(*) FROM runs").fetchall()
    return total, every - total, _sqlite_runs(database, live)


def _sqlite_runs(database: sqlite3.Connection, live: str) -> Iterator[SourceRun]:
    """Each live run with its params, tags and metrics: each table read once, in run order."""
    runs = database.execute(
        "SELECT r.run_uuid, e.name, r.name, r.status, r.user_id, r.start_time, r.end_time "
        f"{live} ORDER BY r.run_uuid"
    )
    keyed = {
        table: database.execute(f"SELECT run_uuid, key, value FROM {table} ORDER BY run_uuid")
        for table in ("params", "tags")
    }
    metrics = database.execute(
        "SELECT run_uuid, key, CASE WHEN is_nan THEN 'nan' ELSE value END, step, timestamp "
        "FROM metrics ORDER BY run_uuid, key, step, timestamp"
    )
    cursors = {name: _Grouped(cursor) for name, cursor in (*keyed.items(), ("metrics", metrics))}
    for run_id, experiment, name, status, user, start, end in runs:
        run = SourceRun(run_id, experiment, name, status, user, start, end)
        run.params = {key: value for key, value in cursors["params"].rows_of(run_id)}
        run.tags = {key: v for key, v in cursors["tags"].rows_of(run_id) if v is not None}
        codes: dict[str, int] = {}
        for key, value, step, timestamp in cursors["metrics"].rows_of(run_id):
            code = codes.get(key)
            if code is None:
                code = codes[key] = len(run.metric_keys)
                run.metric_keys.append(key)
            run.metric_key_codes.append(code)
            run.metric_values.append(float(value))
            run.metric_steps.append(step)
            run.metric_times_ms.append(timestamp)
        yield run


class _Grouped:
    """A cursor over rows sorted by run id, read run by run."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor
        self.pending: tuple[Any, ...] | None = next(cursor, None)

    def rows_of(self, run_id: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``run_id`` (without the id), skipping those of runs before it."""
        while self.pending is not None and self.pending[0] < run_id:
            self.pending = next(self.cursor, None)
        while self.pending is not None and self.pending[0] == run_id:
            yield self.pending[1:]
            self.pending = next(self.cursor, None)


# -- MLflow's file store ---------------------------------------------------------------------


def _file_store(root: str) -> tuple[int, int, Iterator[SourceRun]]:
    try:
        import yaml
    except ImportError:
        raise ImportSourceError(
            "reading an MLflow file store needs PyYAML: pip install 'lakestore[mlflow]'"
        ) from None

    def meta(folder: str) -> dict[str, Any]:
        with open(os.path.join(folder, "meta.yaml"), encoding="utf-8") as file:
            return yaml.safe_load(file) or {}

    found: list[tuple[str, str]] = []  # (experiment name, run folder)
    deleted = 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or not os.path.isfile(os.path.join(entry.path, "meta.yaml")):
            continue
        experiment = meta(entry.path)
        folders = [
            run.path
            for run in os.scandir(entry.path)
            if run.is_dir() and os.path.isfile(os.path.join(run.path, "meta.yaml"))
        ]
        if experiment.get("lifecycle_stage", "active") != "active":
            deleted += len(folders)
            continue
        found += [(str(experiment["name"]), folder) for folder in sorted(folders)]
    if not found and not deleted and not os.path.isfile(os.path.join(root, "0", "meta.yaml")):
        raise ImportSourceError(f"{root} is not an MLflow file store (no experiment meta.yaml)")

    def runs() -> Iterator[SourceRun]:
        nonlocal deleted
        for experiment, folder in found:
            info = meta(folder)
            if info.get("lifecycle_stage", "active") != "active":
                continue
            status = info.get("status", 3)
            run = SourceRun(
                str(info.get("run_id") or info.get("run_uuid")), experiment,
                info.get("run_name"), _FILE_STORE_STATUSES.get(status, str(status)),
                info.get("user_id"), info.get("start_time"), info.get("end_time"),
            )  # fmt: skip
            run.params = _key_files(os.path.join(folder, "params"))
            run.tags = _key_files(os.path.join(folder, "tags"))
            for key, text in sorted(_key_files(os.path.join(folder, "metrics")).items()):
                code = len(run.metric_keys)
                run.metric_keys.append(key)
                for line in text.splitlines():
                    timestamp, value, *step = line.split()
                    run.metric_key_codes.append(code)
                    run.metric_values.append(float(value))
                    run.metric_steps.append(int(step[0]) if step else 0)
                    run.metric_times_ms.append(int(timestamp))
            yield run

    live = sum(
        1 for _, folder in found if meta(folder).get("lifecycle_stage", "active") == "active"
    )
    return live, deleted + len(found) - live, runs()


def _key_files(folder: str) -> dict[str, str]:
    """Each file under ``folder`` (keys with ``/`` are subfolders) -> its text."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, encoding="utf-8") as file:
                found[os.path.relpath(path, folder).replace(os.sep, "/")] = file.read()
    return found


# -- writing ---------------------------------------------------------------------------------


def _write_all(
    storage: Storage,
    runs: Iterator[SourceRun],
    total: int,
    deleted: int,
    present: set[str],
    progress: Progress | None,
) -> ImportSummary:
    imported = skipped = points = 0
    for done, run in enumerate(runs, 1):
        if run.run_id in present:
            skipped += 1
        else:
            points += _write_run(storage, run)
            imported += 1
        if progress is not None:
            progress(done, total)
    return ImportSummary(imported, skipped, deleted, points)


def _write_run(storage: Storage, run: SourceRun) -> int:
    """Write ``run`` as the files of one writer; the number of metric rows written."""
    import pyarrow as pa

    from lakestore.writer import RunWriter, WriterOptions, metric_table

    where = f"run {run.run_id} of experiment {run.experiment!r}"
    try:
        format.check_run_id(run.run_id)
        experiment = format.check_experiment_name(run.experiment)
        writer = RunWriter(storage, experiment, run.run_id, WriterOptions.from_environment())
    except LakestoreError as error:
        raise ImportSourceError(f"cannot import {where}: {error}") from None
    try:
        start = (run.start_ms or 0) * 1000
        end = None if run.end_ms is None else max(run.end_ms * 1000, start + 1)
        status = _STATUSES.get(run.status, run.status)
        event = (run.run_name, run.parent_run_id, run.user, None, start)
        rows: list[tuple[Any, ...]] = [(start, "RUNNING", *event, None, writer.writer_id)]
        if status != "RUNNING":
            rows.append((end or start + 1, status, *event, end, writer.writer_id))
        writer.append_rows("runs", rows)
        writer.append_rows(
            "params",
            [
                (format.check_key(key, "param"), *format.param_text_and_float(key, value), start)
                for key, value in run.params.items()
            ],
        )
        writer.append_rows(
            "tags",
            [
                (format.check_key(k, "tag"), format.check_text(v, f"tag {k!r} value"), start)
                for k, v in run.tags.items()
            ],
        )
        if run.metric_values:
            for key in run.metric_keys:
                format.check_key(key, "metric")
            timestamp_type = format.arrow_schema("metrics").field("timestamp").type
            micros = array.array("q", (ms * 1000 for ms in run.metric_times_ms))
            writer.append_metric_table(
                metric_table(
                    pa.DictionaryArray.from_arrays(
                        pa.array(run.metric_key_codes, pa.int32()),
                        pa.array(run.metric_keys, pa.string()),
                    ),
                    pa.array(run.metric_values, pa.float64()),
                    pa.array(run.metric_steps, pa.int64()),
                    pa.array(micros, pa.int64()).cast(timestamp_type),
                )
            )
    except LakestoreError as error:
        writer.discard()
        raise ImportSourceError(f"cannot import {where}: {error}") from None
    writer.close()
    return len(run.metric_values)
