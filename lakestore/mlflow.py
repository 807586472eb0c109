"""MLflow's tracking API over lakestore: ``import lakestore.mlflow as mlflow``.

A training script written for MLflow runs unchanged with that one import line: tracking
URI, experiments, runs, params, metrics, tags, ``search_runs`` (a pandas DataFrame when
pandas is installed, else Polars) and ``MlflowClient``'s tracking methods, returning
objects shaped as MLflow's (``run.info.run_id``, ``run.data.metrics``). Where the two
differ:

- an experiment's id is the name it was created with, which renaming leaves as it is
  (MLflow's default experiment ``"0"`` is lakestore's ``"default"``), and an experiment
  exists once it has a run or a tag;
- the tracking URI is a folder, a ``file:`` URL or an ``s3://`` URL: the store itself
  (``sqlite:`` and ``http:`` stores are read by ``lakestore import mlflow``);
- a run whose writers died is ``CRASHED`` in lakestore, ``FAILED`` here, MLflow's word;
- artifacts, models, datasets and autologging are not lakestore's: they raise
  :class:`OutOfScopeError`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from types import SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any

from lakestore import lifecycle as _lifecycle
from lakestore import reading as _reading
from lakestore import session as _session
from lakestore import tracking as _tracking
from lakestore.errors import LakestoreError, RunNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa


class OutOfScopeError(LakestoreError):
    """An MLflow call outside experiment tracking (artifacts, models, autologging)."""


DEFAULT_EXPERIMENT_ID = "0"
"""MLflow's id of its default experiment, which is lakestore's ``default``."""

_STATUSES = {"CRASHED": "FAILED"}
"""lakestore's run statuses that MLflow lacks, as MLflow words them."""


# -- entities ------------------------------------------------------------------------------


class ViewType:
    """Which runs or experiments a search takes: MLflow's ``mlflow.entities.ViewType``."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


@dataclass(frozen=True)
class Metric:
    """One point of a metric: MLflow's ``mlflow.entities.Metric``."""

    key: str
    value: float
    timestamp: int | None = None
    """Milliseconds since the epoch."""
    step: int = 0


@dataclass(frozen=True)
class Param:
    key: str
    value: Any


@dataclass(frozen=True)
class RunTag:
    key: str
    value: Any


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    run_name: str | None
    experiment_id: str
    user_id: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str = "active"
    artifact_uri: str | None = None

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass(frozen=True)
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """A run as MLflow's ``get_run`` returns it."""

    info: RunInfo
    data: RunData


class ActiveRun:
    """The run ``start_run`` returns: ``.info`` and ``.data`` as MLflow's, a context
    manager that ends the run, FAILED if its block raised."""

    def __init__(self, run: _tracking.Run) -> None:
        self._run = run

    @property
    def info(self) -> RunInfo:
        run = self._run
        return RunInfo(
            run.run_id, run.run_name, _experiment_id(run.experiment), _tracking._user(),
            _STATUSES.get(run.status, run.status), None, None,
        )  # fmt: skip

    @property
    def data(self) -> RunData:
        return get_run(self._run.run_id).data

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._run.__exit__(exc_type, exc, traceback)


def _experiment_id(name: str) -> str:
    return DEFAULT_EXPERIMENT_ID if name == _tracking.DEFAULT_EXPERIMENT else name


def _experiment_name(experiment_id: str | int) -> str:
    text = str(experiment_id)
    return _tracking.DEFAULT_EXPERIMENT if text == DEFAULT_EXPERIMENT_ID else text


def _milliseconds(moment: dt.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _system_tags(record: _reading.RunRecord) -> dict[str, str]:
    """MLflow's system tags of a run, from lakestore's columns (a tag logged under the
    same name wins)."""
    tags = {"mlflow.runName": record.run_name, "mlflow.user": record.user}
    tags["mlflow.parentRunId"] = record.parent_run_id
    return {key: value for key, value in tags.items() if value is not None}


def _as_mlflow_run(record: _reading.RunRecord) -> Run:
    info = RunInfo(
        record.run_id, record.run_name, _experiment_id(record.experiment), record.user,
        _STATUSES.get(record.status, record.status),
        _milliseconds(record.start_time), _milliseconds(record.end_time),
        record.lifecycle_stage,
    )  # fmt: skip
    tags = _system_tags(record) | record.tags
    return Run(info, RunData(dict(record.metrics), dict(record.params), tags))


def _as_mlflow_experiment(record: _reading.ExperimentRecord) -> Experiment:
    created = _milliseconds(record.first_start)
    updated = _milliseconds(record.last_start)
    return Experiment(
        _experiment_id(record.experiment_id), record.name, None, record.lifecycle_stage,
        dict(record.tags), created, updated,
    )  # fmt: skip


# -- tracking URI and experiments -------------------------------------------------------------


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Log to and read from the store at ``uri``: a folder, ``file:`` URL or ``s3://`` URL."""
    _session.set_store(_store_of(os.fspath(uri)))


def get_tracking_uri() -> str:
    """The store runs are written to."""
    return _session.get_store_uri()


def _store_of(uri: str) -> str:
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in ("sqlite", "http", "https", "postgresql", "mysql", "databricks"):
        raise LakestoreError(
            f"tracking URI {uri!r} names an MLflow server or database; lakestore.mlflow "
            "logs to a lakestore store (a folder, file: URL or s3:// URL). Copy existing "
            "MLflow data with `lakestore import mlflow URI`"
        )
    return uri


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make the experiment (by name, or by id) the one of new runs, creating it if new."""
    if (experiment_name is None) == (experiment_id is None):
        raise LakestoreError("set_experiment takes an experiment_name or an experiment_id")
    if experiment_name is not None:
        found = get_experiment_by_name(experiment_name)
    else:
        found = get_experiment(experiment_id)  # type: ignore[arg-type]
    if found is None:
        name = experiment_name if experiment_name is not None else experiment_id
        found = Experiment(_experiment_id(str(name)), _experiment_name(str(name)))
    elif found.lifecycle_stage == "deleted":
        raise LakestoreError(
            f"experiment {found.name!r} is deleted: restore it first "
            f"(mlflow.tracking.MlflowClient().restore_experiment({found.experiment_id!r}))"
        )
    _tracking.set_experiment(_experiment_name(found.experiment_id))
    return found


def create_experiment(
    name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
) -> str:
    """The id of a new experiment ``name`` (its name), with ``tags``."""
    from lakestore import spec

    spec.check_experiment_name(name)
    if get_experiment_by_name(name) is not None:
        raise LakestoreError(f"experiment {name!r} already exists")
    _lifecycle.set_experiment_tags(tags or {}, experiment=_experiment_name(name))
    return _experiment_id(name)


def get_experiment(experiment_id: str) -> Experiment | None:
    """The experiment of id ``experiment_id`` (deleted or not), or None."""
    wanted = _experiment_name(experiment_id)
    for found in _experiments("all"):
        if found.experiment_id == wanted:
            return _as_mlflow_experiment(found)
    return None


def get_experiment_by_name(name: str) -> Experiment | None:
    """The experiment named ``name`` (deleted or not), or None."""
    if not _store_exists():
        return None
    found = _reading.get_experiment_by_name(name)
    return None if found is None else _as_mlflow_experiment(found)


def _experiments(view_type: Any) -> list[_reading.ExperimentRecord]:
    if not _store_exists():
        return []
    return _reading.search_experiments(view_type=view_type)


def search_experiments(
    view_type: Any = ViewType.ACTIVE_ONLY, *args: Any, **kwargs: Any
) -> list[Experiment]:
    """The experiments of the store in ``view_type`` (filters and ordering are not taken)."""
    return [_as_mlflow_experiment(found) for found in _experiments(view_type)]


def delete_experiment(experiment_id: str) -> None:
    """Mark the experiment deleted, with its runs (``lakestore gc`` purges it later)."""
    _lifecycle.delete_experiment(_experiment_name(experiment_id))


def set_experiment_tag(key: str, value: Any) -> None:
    """Set a tag on the current experiment."""
    set_experiment_tags({key: value})


def set_experiment_tags(tags: dict[str, Any]) -> None:
    """Set tags on the current experiment."""
    _lifecycle.set_experiment_tags(tags)


def delete_run(run_id: str) -> None:
    """Mark the run deleted (``lakestore gc`` purges it later)."""
    _lifecycle.delete_run(run_id)


def _store_exists() -> bool:
    from lakestore import spec

    return spec.read_format_version(_session.opened()) is not None


# -- runs --------------------------------------------------------------------------------------


class _Handles:
    """The drop-in's objects for the runs of this process's session (a session resource):
    the ActiveRun of each run started with start_run, and the runs that clients created
    or resumed, by id."""

    def __init__(self) -> None:
        self.active: dict[str, ActiveRun] = {}
        self.client_runs: dict[str, _tracking.Run] = {}

    def close(self) -> None:
        self.active.clear()
        self.client_runs.clear()


def _handles() -> _Handles:
    return _session.current().resource(_Handles)


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start (or resume) a run and make it the active one, as MLflow's ``start_run``."""
    tags = dict(tags or {})
    if description is not None:
        tags["mlflow.note.content"] = description
    run = _tracking.start_run(
        run_id,
        experiment=None if experiment_id is None else _experiment_name(experiment_id),
        run_name=run_name,
        tags=tags,
        nested=nested,
        parent_run_id=parent_run_id,
        log_system_metrics=log_system_metrics,
    )
    active = _handles().active[run.run_id] = ActiveRun(run)
    return active


def _wrapped(run: _tracking.Run | None) -> ActiveRun | None:
    if run is None:
        return None
    return _handles().active.setdefault(run.run_id, ActiveRun(run))


def active_run() -> ActiveRun | None:
    return _wrapped(_tracking.active_run())


def last_active_run() -> ActiveRun | None:
    return _wrapped(_tracking.last_active_run())


def end_run(status: str = "FINISHED") -> None:
    _tracking.end_run(status)


def _target(run_id: str | None) -> _tracking.Run:
    """The active run, or the open run ``run_id`` (resumed if this process has none)."""
    if run_id is None:
        return _tracking._require_active_run()
    return MlflowClient()._open(run_id)


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    _target(None).log_param(key, value)
    return value


def log_params(
    params: dict[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> None:
    _target(run_id).log_params(params)


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    **ignored: Any,
) -> None:
    _target(run_id).log_metric(key, value, step or 0, timestamp)


def log_metrics(
    metrics: dict[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    **ignored: Any,
) -> None:
    _target(run_id).log_metrics(metrics, step or 0, timestamp)


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    _target(None).set_tag(key, value)


def set_tags(tags: dict[str, Any], synchronous: bool | None = None) -> None:
    _target(None).set_tags(tags)


def delete_tag(key: str) -> None:
    _target(None).delete_tag(key)


def get_run(run_id: str) -> Run:
    """The run ``run_id`` as the store holds it now."""
    return _as_mlflow_run(_reading.get_run(run_id))


def search_runs(
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    run_view_type: Any = None,
    max_results: int = 100_000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> Any:
    """Runs matching an MLflow filter, as MLflow's ``search_runs``: a pandas DataFrame
    (Polars if pandas is not installed), or with ``output_format="list"`` Run objects.

    Without experiments named, searches the current experiment, or every one with
    ``search_all_experiments``."""
    experiments = [_experiment_name(i) for i in experiment_ids or []]
    if experiment_names:
        ids = {found.name: found.experiment_id for found in _experiments("all")}
        experiments += [ids.get(name, name) for name in experiment_names]
    if not experiments and not search_all_experiments:
        experiments = [_tracking.current_experiment()]
    found = _reading.search_runs(
        filter_string or None,
        order_by=order_by,
        max_results=max_results,
        experiments=experiments or None,
        view_type=ViewType.ACTIVE_ONLY if run_view_type is None else run_view_type,
    ).to_arrow_table()
    if output_format == "list":
        return [get_run(run_id) for run_id in found.column("run_id").to_pylist()]
    if output_format != "pandas":
        raise LakestoreError(f"output_format {output_format!r} is not 'pandas' or 'list'")
    return _data_frame(_mlflow_columns(found))


def _mlflow_columns(found: pa.Table) -> pa.Table:
    """A search result in MLflow's columns: run_id, experiment_id, status, artifact_uri,
    start_time, end_time, then metrics.*, params.*, tags.* with the system tags."""
    import pyarrow as pa

    def column(name: str) -> pa.ChunkedArray:
        return found.column(name)

    statuses = [_STATUSES.get(s, s) for s in column("status").to_pylist()]
    experiments = [_experiment_id(e) for e in column("experiment").to_pylist()]
    columns: dict[str, Any] = {
        "run_id": column("run_id"),
        "experiment_id": pa.array(experiments, pa.string()),
        "status": pa.array(statuses, pa.string()),
        "artifact_uri": pa.nulls(found.num_rows, pa.string()),
        "start_time": column("start_time"),
        "end_time": column("end_time"),
    }
    for prefix in ("metrics.", "params.", "tags."):
        columns |= {name: column(name) for name in found.column_names if name.startswith(prefix)}
    system = {
        "tags.mlflow.runName": column("run_name"),
        "tags.mlflow.user": column("user"),
        "tags.mlflow.parentRunId": column("parent_run_id"),
    }
    for name, values in system.items():
        if name not in columns and values.null_count < found.num_rows:
            columns[name] = values
    return pa.table(columns)


def _data_frame(table: pa.Table) -> Any:
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        import polars

        return polars.from_arrow(table)
    return table.to_pandas()


# -- the client --------------------------------------------------------------------------------


class MlflowClient:
    """MLflow's client for tracking: runs by id, experiments, batches of metrics."""

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        if tracking_uri is not None:
            set_tracking_uri(tracking_uri)

    def _open(self, run_id: str) -> _tracking.Run:
        active = _tracking.active_run()
        if active is not None and active.run_id == run_id:
            return active
        client_runs = _handles().client_runs
        run = client_runs.get(run_id)
        if run is None or run.status != "RUNNING":
            run = client_runs[run_id] = _tracking.begin_run(run_id)
        return run

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Any = None
    ) -> str:
        return create_experiment(name)

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        return get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return get_experiment_by_name(name)

    def search_experiments(
        self, view_type: Any = ViewType.ACTIVE_ONLY, *args: Any, **kwargs: Any
    ) -> list[Experiment]:
        return search_experiments(view_type)

    def delete_experiment(self, experiment_id: str) -> None:
        delete_experiment(experiment_id)

    def restore_experiment(self, experiment_id: str) -> None:
        _lifecycle.restore_experiment(_experiment_name(experiment_id))

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        _lifecycle.rename_experiment(_experiment_name(experiment_id), new_name)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        _lifecycle.set_experiment_tags({key: value}, experiment=_experiment_name(experiment_id))

    def delete_run(self, run_id: str) -> None:
        delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        _lifecycle.restore_run(run_id)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """Rename the run (``name``) or end it with ``status``."""
        if name is not None:
            _lifecycle.rename_run(run_id, name)
        if status is not None:
            self.set_terminated(run_id, status)

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        """Start a run that is not the active one; end it with set_terminated."""
        run = _tracking.begin_run(
            experiment=_experiment_name(experiment_id), run_name=run_name, tags=tags
        )
        _handles().client_runs[run.run_id] = run
        return Run(
            RunInfo(
                run.run_id,
                run.run_name,
                _experiment_id(run.experiment),
                _tracking._user(),
                "RUNNING",
                start_time,
                None,
            ),
            RunData(tags={k: str(v) for k, v in (tags or {}).items()}),
        )

    def get_run(self, run_id: str) -> Run:
        return get_run(run_id)

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        self._open(run_id).end(status or "FINISHED")

    def log_metric(
        self, run_id: str, key: str, value: float, timestamp: int | None = None,
        step: int | None = None, synchronous: bool | None = None, **ignored: Any,
    ) -> None:  # fmt: skip
        self._open(run_id).log_metric(key, value, step or 0, timestamp)

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        self._open(run_id).log_param(key, value)
        return value

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        self._open(run_id).set_tag(key, value)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._open(run_id).delete_tag(key)

    def log_batch(
        self,
        run_id: str,
        metrics: list[Metric] = (),  # type: ignore[assignment]
        params: list[Param] = (),  # type: ignore[assignment]
        tags: list[RunTag] = (),  # type: ignore[assignment]
        synchronous: bool | None = None,
    ) -> None:
        """Log metrics, params and tags at once: if one is bad, none of its kind is logged."""
        run = self._open(run_id)
        run.log_params({param.key: param.value for param in params})
        run.set_tags({tag.key: tag.value for tag in tags})
        for metric in metrics:
            run.log_metric(metric.key, metric.value, metric.step or 0, metric.timestamp)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        history = _reading.get_metric_history(run_id, key).to_arrow_table().to_pylist()
        return [
            Metric(key, row["value"], _milliseconds(row["timestamp"]), row["step"])
            for row in history
        ]

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: Any = None,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> list[Run]:
        return search_runs(  # type: ignore[no-any-return]
            experiment_ids,
            filter_string,
            run_view_type,
            max_results,
            order_by,
            output_format="list",
        )


entities = SimpleNamespace(
    Metric=Metric, Param=Param, RunTag=RunTag, Experiment=Experiment, Run=Run,
    RunInfo=RunInfo, RunData=RunData, ViewType=ViewType,
)  # fmt: skip
"""``mlflow.entities``, as scripts name the entities."""

tracking = SimpleNamespace(MlflowClient=MlflowClient)
"""``mlflow.tracking``, as scripts name the client."""


# -- what lakestore does not do ----------------------------------------------------------------

_OUT_OF_SCOPE = {
    "log_artifact", "log_artifacts", "log_text", "log_dict", "log_figure", "log_image",
    "log_table", "log_model", "load_model", "register_model", "log_input", "autolog",
    "get_artifact_uri", "artifacts", "models", "pyfunc", "sklearn", "pytorch", "tensorflow",
    "keras", "xgboost", "lightgbm", "transformers", "data", "evaluate", "genai", "tracing",
    "trace", "start_span", "log_trace", "deployments", "projects", "run",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _OUT_OF_SCOPE:
        raise OutOfScopeError(
            f"mlflow.{name} is not part of lakestore: lakestore tracks params, metrics and "
            "tags. Keep artifacts and models with MLflow itself, or in files beside the "
            "store named by the run id"
        )
    raise AttributeError(
        f"lakestore.mlflow has no {name!r}: it covers MLflow's tracking API (runs, params, "
        "metrics, tags, experiments, search_runs, MlflowClient)"
    )


__all__ = [
    "ActiveRun",
    "Experiment",
    "Metric",
    "MlflowClient",
    "OutOfScopeError",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunNotFoundError",
    "RunTag",
    "ViewType",
    "active_run",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "entities",
    "get_experiment",
    "get_experiment_by_name",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
    "tracking",
]  # fmt: skip
