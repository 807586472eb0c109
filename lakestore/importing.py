"""Importing tracking data from MLflow and trackio into a lakestore store.

``import_mlflow(uri)`` reads an MLflow tracking store, an SQLite database
(``sqlite:///mlflow.db``) or a file store (an ``mlruns/`` folder), and writes its runs to
the lakestore store with their ids, names, statuses, start and end times, parent runs,
users, params, tags (MLflow's system tags included) and full metric histories with their
timestamps; or a running MLflow server (``http://host:5000``), through MLflow's client.
SQLite databases are read directly, in one pass per table: MLflow's client would fetch
each run's each metric history with its own query. Runs the store already
holds are skipped, so that importing again duplicates nothing and adds the runs logged
since. Deleted runs and experiments (MLflow's ``lifecycle_stage``) are left out.

``import_trackio(project)`` reads a trackio project (its SQLite file, by path or by name
in ``$TRACKIO_DIR``) as an experiment of that name: each run with its config as params
(``_Username`` as its user, ``_Group`` as the tag ``trackio.group``), its logged numbers
as metrics (media and tables left out) and its system metrics under ``system/``.

Each imported run is written as a run of its own writer: one file per table, as a run
that logged everything at once would leave (docs/FORMAT.md).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from lakestore import spec
from lakestore.errors import ImportSourceError, LakestoreError
from lakestore.session import open_for_writing

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
    points: list[tuple[str, float | None, int, int]] = field(default_factory=list)
    """Its metric points: (key, value, step, timestamp in milliseconds); a None value is
    NaN (SQLite has no NaN)."""

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
        return _server_store(uri)
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

    if spec.read_format_version(storage) is None:
        return set()
    with connect(storage.url) as opened:
        return {run_id for (run_id,) in opened.sql("SELECT run_id FROM all_runs").fetchall()}


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
        "SELECT run_uuid, key, CASE WHEN is_nan THEN NULL ELSE value END, step, timestamp "
        "FROM metrics ORDER BY run_uuid"
    )
    cursors = {name: _Grouped(cursor) for name, cursor in (*keyed.items(), ("metrics", metrics))}
    for run_id, experiment, name, status, user, start, end in runs:
        run = SourceRun(run_id, experiment, name, status, user, start, end)
        run.params = {key: value for key, value in cursors["params"].rows_of(run_id)}
        run.tags = {key: v for key, v in cursors["tags"].rows_of(run_id) if v is not None}
        run.points = list(cursors["metrics"].rows_of(run_id))  # type: ignore[arg-type]
        yield run


class _Grouped:
    """A cursor over rows sorted by run id, read run by run (in batches: a row at a time
    costs more than sorting them)."""

    BATCH = 65_536

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor
        self.rows: list[tuple[Any, ...]] = []
        self.index = 0

    def _pending(self) -> tuple[Any, ...] | None:
        if self.index == len(self.rows):
            self.rows, self.index = self.cursor.fetchmany(self.BATCH), 0
            if not self.rows:
                return None
        return self.rows[self.index]

    def rows_of(self, run_id: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``run_id`` (without the id), skipping those of runs before it."""
        while (row := self._pending()) is not None and row[0] < run_id:
            self.index += 1
        while (row := self._pending()) is not None and row[0] == run_id:
            self.index += 1
            yield row[1:]


# -- a running MLflow server -----------------------------------------------------------------

SERVER_PAGE = 1000
"""Runs asked of an MLflow server at a time."""


def _server_store(uri: str) -> tuple[int, int, Iterator[SourceRun]]:
    """The live runs of the MLflow server at ``uri``, through MLflow's own client: a
    request per page of runs, and one per metric of each run for its history (MLflow's
    REST API has no bulk history). Reading the server's database instead is much faster
    where it is reachable."""
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportSourceError(
            f"{uri} is an MLflow server: reading one takes MLflow's client, "
            "pip install 'lakestore[mlflow]'"
        ) from None
    client = MlflowClient(tracking_uri=uri)

    def pages(search: Callable[[str | None], Any]) -> list[Any]:
        found, token = [], None
        while True:
            page = search(token)
            found += list(page)
            token = page.token
            if not token:
                return found

    try:
        experiments = {
            experiment.experiment_id: experiment.name
            for experiment in pages(
                lambda token: client.search_experiments(
                    view_type=ViewType.ACTIVE_ONLY, max_results=SERVER_PAGE, page_token=token
                )
            )
        }

        def search(view_type: int) -> list[Any]:
            if not experiments:
                return []
            return pages(
                lambda token: client.search_runs(
                    list(experiments),
                    run_view_type=view_type,
                    max_results=SERVER_PAGE,
                    page_token=token,
                )
            )

        live, deleted = search(ViewType.ACTIVE_ONLY), search(ViewType.DELETED_ONLY)
    except Exception as error:  # MLflow raises its own and requests' errors
        said = " ".join(str(error).split())  # one line: requests' errors span several
        raise ImportSourceError(f"cannot read the MLflow server at {uri}: {said}") from None

    def runs() -> Iterator[SourceRun]:
        for found in live:
            info, data = found.info, found.data
            run = SourceRun(
                info.run_id, experiments[info.experiment_id], info.run_name,
                info.status, info.user_id, info.start_time, info.end_time,
                dict(data.params), dict(data.tags),
            )  # fmt: skip
            for key in sorted(data.metrics):
                run.points += [
                    (key, None if math.isnan(p.value) else p.value, p.step, p.timestamp)
                    for p in client.get_metric_history(info.run_id, key)
                ]
            yield run

    return len(live), len(deleted), runs()


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
                for line in text.splitlines():
                    timestamp, value, *step = line.split()
                    point = (key, float(value), int(step[0]) if step else 0, int(timestamp))
                    run.points.append(point)
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


# -- trackio ---------------------------------------------------------------------------------

_TRACKIO_SPECIALS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def trackio_folder() -> str:
    """Where trackio keeps its projects: ``$TRACKIO_DIR``, else its default."""
    default = os.path.join("~", ".cache", "huggingface", "trackio")
    return os.path.expanduser(os.environ.get("TRACKIO_DIR", default))


def import_trackio(
    project: str,
    *,
    store: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import the trackio project ``project`` (a name in ``$TRACKIO_DIR``, or the path of
    its ``.db`` file) into the lakestore store ``store`` as the experiment of its name."""
    path = project if project.endswith(".db") else os.path.join(trackio_folder(), f"{project}.db")
    if not os.path.isfile(path):
        raise ImportSourceError(f"no trackio project at {path!r}")
    try:
        database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        columns = {
            table: {row[1] for row in database.execute(f"PRAGMA table_info({table})")}
            for table in ("metrics", "configs", "system_metrics")
        }
    except sqlite3.DatabaseError as error:
        raise ImportSourceError(f"{path} is not an SQLite database ({error})") from None
    if not {"run_name", "step", "metrics"} <= columns["metrics"]:
        raise ImportSourceError(f"{path} is not a trackio project (no metrics table)")
    name = os.path.basename(path)[: -len(".db")]
    runs = _trackio_runs(database, name, columns)
    storage = open_for_writing(store, storage_options)
    return _write_all(storage, iter(runs), len(runs), 0, _runs_in(storage), progress)


def _trackio_runs(
    database: sqlite3.Connection, project: str, columns: dict[str, set[str]]
) -> list[SourceRun]:
    """Every run of the project, in the order trackio created them."""
    import json

    def identity(table: str) -> str:  # trackio before run ids named runs by name alone
        return "run_id" if "run_id" in columns[table] else "run_name"

    runs: dict[str, SourceRun] = {}

    def run_of(key: str, name: str) -> SourceRun:
        run = runs.get(key)
        if run is None:
            run_id = key if identity("metrics") == "run_id" else _stable_id(project, name)
            run = runs[key] = SourceRun(run_id, project, name, "FINISHED", None, None, None)
        return run

    if columns["configs"]:
        configs = database.execute(
            f"SELECT {identity('configs')}, run_name, config, created_at FROM configs ORDER BY id"
        )
        for key, name, config, created in configs:
            run = run_of(key, name)
            values = json.loads(config)
            run.user = values.pop("_Username", None)
            group = values.pop("_Group", None)
            if group is not None:
                run.tags["trackio.group"] = str(group)
            run.start_ms = _iso_ms(values.pop("_Created", None) or created)
            run.params = {
                key: value if isinstance(value, str) else json.dumps(value)
                for key, value in values.items()
                if not key.startswith("_")
            }
    sources = [("metrics", "step", "")]
    if columns["system_metrics"]:
        sources.append(("system_metrics", "NULL", "system/"))
    for table, step, prefix in sources:
        rows = database.execute(
            f"SELECT {identity(table)}, run_name, {step}, timestamp, metrics FROM {table} "
            "ORDER BY id"
        )
        samples: dict[str, int] = {}
        for key, name, logged_step, timestamp, logged in rows:
            run = run_of(key, name)
            moment = _iso_ms(timestamp) or 0
            if step == "NULL":  # system metrics have no step: number the samples
                logged_step = samples[key] = samples.get(key, -1) + 1
            for metric, value in json.loads(logged).items():
                number = _TRACKIO_SPECIALS.get(value, value) if isinstance(value, str) else value
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    continue  # an image, a table, a histogram: not a metric point
                run.points.append((prefix + metric, float(number), logged_step, moment))
            run.start_ms = moment if run.start_ms is None else min(run.start_ms, moment)
            run.end_ms = moment if run.end_ms is None else max(run.end_ms, moment)
    for run in runs.values():
        if run.end_ms is None:
            run.end_ms = run.start_ms
    return list(runs.values())


def _iso_ms(text: str | None) -> int | None:
    import datetime as dt

    if text is None:
        return None
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp() * 1000)


def _stable_id(project: str, name: str) -> str:
    """The id of a run that trackio named only: the same at each import."""
    import uuid

    return uuid.uuid5(uuid.NAMESPACE_URL, f"trackio:{project}/{name}").hex


# -- writing ---------------------------------------------------------------------------------


WRITERS = 4
"""Runs written at once: a run's files cost more in file creations and syncs than in
Python, and those wait on the disk (or the network) with the interpreter free."""


def _write_all(
    storage: Storage,
    runs: Iterator[SourceRun],
    total: int,
    deleted: int,
    present: set[str],
    progress: Progress | None,
) -> ImportSummary:
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    imported = skipped = points = done = 0
    pending: set[Future[int]] = set()
    experiments: set[str] = set()

    def collect(finished: set[Future[int]]) -> None:
        nonlocal imported, points, done
        for future in finished:
            points += future.result()  # an import that failed fails here, naming the run
            imported += 1
            done += 1
            if progress is not None:
                progress(done + skipped, total)

    with ThreadPoolExecutor(WRITERS, thread_name_prefix="lakestore-import") as pool:
        for run in runs:
            if run.run_id in present:
                skipped += 1
                if progress is not None:
                    progress(done + skipped, total)
                continue
            experiments.add(run.experiment)
            pending.add(pool.submit(_write_run, storage, run))
            if len(pending) >= 2 * WRITERS:  # read ahead no further: runs hold their rows
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(finished)
        collect(set(pending))
    if imported:
        _merge(storage, experiments)
    return ImportSummary(imported, skipped, deleted, points)


def _merge(storage: Storage, experiments: set[str]) -> None:
    """Merge what the import left in the inbox of ``experiments``, once and in this
    thread (its writers merge nothing: merging as files arrive would rewrite the same rows
    again and again): the store reads as fast after an import as after any merge, and no
    merge is left running inside DuckDB when the process exits (which would abort it)."""
    from lakestore import layout, merge

    for experiment in sorted(experiments):
        merge.merge_experiment(storage, layout.experiment_folder(experiment), min_files=0)


def _write_run(storage: Storage, run: SourceRun) -> int:
    """Write ``run`` as the files of one writer; the number of metric rows written."""

    from lakestore import batches
    from lakestore.writer import RunWriter, WriterOptions

    where = f"run {run.run_id} of experiment {run.experiment!r}"
    try:
        spec.check_run_id(run.run_id)
        experiment = spec.check_experiment_name(run.experiment)
        options = WriterOptions.from_environment()._replace(merge=False)  # merged at the end
        writer = RunWriter(storage, experiment, run.run_id, options)
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
                (spec.check_key(key, "param"), *spec.param_text_and_float(key, value), start)
                for key, value in run.params.items()
            ],
        )
        writer.append_rows(
            "tags",
            [
                (spec.check_key(k, "tag"), spec.check_text(v, f"tag {k!r} value"), start)
                for k, v in run.tags.items()
            ],
        )
        if run.points:
            writer.append_metric_table(batches.points_table(run.points))
    except LakestoreError as error:
        writer.discard()
        raise ImportSourceError(f"cannot import {where}: {error}") from None
    writer.close()
    return len(run.points)
