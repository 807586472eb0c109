"""lakestore: experiment tracking stored as a Parquet lakehouse, queried with DuckDB."""

from typing import TYPE_CHECKING, Any

from lakestore.errors import LakestoreError
from lakestore.lifecycle import (
    delete_experiment,
    delete_run,
    rename_experiment,
    rename_run,
    restore_experiment,
    restore_run,
    set_experiment_tag,
    set_experiment_tags,
)
from lakestore.reading import (
    ExperimentRecord,
    RunRecord,
    get_experiment_by_name,
    get_metric_history,
    get_run,
    search_experiments,
    search_runs,
)
from lakestore.session import get_store_uri, reset, set_store
from lakestore.tracking import (
    Run,
    active_run,
    delete_tag,
    end_run,
    last_active_run,
    log_metric,
    log_metric_series,
    log_metrics,
    log_param,
    log_params,
    set_experiment,
    set_tag,
    set_tags,
    start_run,
)

if TYPE_CHECKING:
    from lakestore.dashboard import ui
    from lakestore.lifecycle import collect_garbage as gc
    from lakestore.maintenance import check_store as check
    from lakestore.maintenance import clean_store as clean
    from lakestore.maintenance import compact_store as compact
    from lakestore.maintenance import sync_spool as sync
    from lakestore.query import Store, connect

__version__ = "0.1.0"

# The query layer loads on first use: a training script that only logs never pays for it.
_LAZY = {
    "Store": ("lakestore.query", "Store"),
    "connect": ("lakestore.query", "connect"),
    "compact": ("lakestore.maintenance", "compact_store"),
    "check": ("lakestore.maintenance", "check_store"),
    "clean": ("lakestore.maintenance", "clean_store"),
    "sync": ("lakestore.maintenance", "sync_spool"),
    "gc": ("lakestore.lifecycle", "collect_garbage"),
    "ui": ("lakestore.dashboard", "ui"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lakestore' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


__all__ = [
    "ExperimentRecord",
    "LakestoreError",
    "Run",
    "RunRecord",
    "Store",
    "active_run",
    "check",
    "clean",
    "compact",
    "connect",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "gc",
    "get_experiment_by_name",
    "get_metric_history",
    "get_run",
    "get_store_uri",
    "last_active_run",
    "log_metric",
    "log_metric_series",
    "log_metrics",
    "log_param",
    "log_params",
    "rename_experiment",
    "rename_run",
    "reset",
    "restore_experiment",
    "restore_run",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "sync",
    "ui",
]
