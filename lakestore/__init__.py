"""lakestore: experiment tracking stored as a Parquet lakehouse, queried with DuckDB."""

from lakestore.compaction import compact_store as compact
from lakestore.errors import LakestoreError
from lakestore.query import Store, connect
from lakestore.tracking import (
    Run,
    active_run,
    end_run,
    get_store_uri,
    log_metric,
    log_metric_series,
    log_metrics,
    log_param,
    log_params,
    set_experiment,
    set_store,
    set_tag,
    set_tags,
    start_run,
)

__version__ = "0.1.0"

__all__ = [
    "LakestoreError",
    "Run",
    "Store",
    "active_run",
    "compact",
    "connect",
    "end_run",
    "get_store_uri",
    "log_metric",
    "log_metric_series",
    "log_metrics",
    "log_param",
    "log_params",
    "set_experiment",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
]
