"""The query layer: a DuckDB connection with views over a store's Parquet files.

Every view reads the files at query time, so data flushed after :func:`connect` is seen by
the next query. The README lists the views; docs/FORMAT.md gives the rules they apply.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lakestore import format
from lakestore.errors import QueryError, StoreError
from lakestore.storage import Storage, open_storage

if TYPE_CHECKING:
    import duckdb

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "int64": "BIGINT",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}

# Views over the raw tables, resolving the append-only records to the current state.
_VIEWS = {
    "metrics": """
        SELECT experiment, run AS run_id, key, value, step, timestamp FROM metrics_log
    """,
    "params": """
        SELECT experiment, run AS run_id, key,
               arg_min(value, timestamp) AS value,
               arg_min(value_float, timestamp) AS value_float,
               min(timestamp) AS timestamp
        FROM params_log GROUP BY experiment, run, key
    """,
    "tags": """
        SELECT * FROM (
            SELECT experiment, run AS run_id, key, value, timestamp FROM tags_log
            QUALIFY row_number() OVER (
                PARTITION BY experiment, run, key ORDER BY timestamp DESC) = 1
        ) WHERE value IS NOT NULL
    """,
    "runs": """
        SELECT experiment, run AS run_id,
               arg_max(run_name, event_time) FILTER (WHERE run_name IS NOT NULL) AS run_name,
               arg_max(status, event_time) AS status,
               arg_min(parent_run_id, event_time)
                   FILTER (WHERE parent_run_id IS NOT NULL) AS parent_run_id,
               arg_max("user", event_time) AS "user",
               arg_max(host, event_time) AS host,
               min(start_time) AS start_time,
               CASE WHEN arg_max(status, event_time) <> 'RUNNING'
                    THEN max(end_time) END AS end_time
        FROM runs_log GROUP BY experiment, run
    """,
    "experiments": """
        SELECT experiment, count(*) AS runs, min(start_time) AS first_start,
               max(start_time) AS last_start
        FROM runs GROUP BY experiment
    """,
}


class Store:
    """A store opened for querying: ``store.sql("SELECT ...")`` over its views."""

    def __init__(self, storage: Storage) -> None:
        import duckdb

        self.storage = storage
        format.read_format_version(storage)
        self.connection = duckdb.connect()
        if storage.fs is not None:
            self.connection.register_filesystem(storage.fs)
        self._empty_tables: set[str] = set()
        try:
            for table in format.TABLES:
                self._create_log_view(table)
            for name, body in _VIEWS.items():
                self.connection.execute(f"CREATE VIEW {name} AS {body}")
        except duckdb.Error as error:
            raise StoreError(f"cannot read store {storage.url}: {error}") from None

    def _create_log_view(self, table: str) -> None:
        """(Re)define the view over ``table``'s files; an empty one until it has files."""
        self.connection.execute(
            f"CREATE OR REPLACE VIEW {table}_log AS {self._table_source(table)}"
        )

    def _table_source(self, table: str) -> str:
        """SQL reading every file of ``table``, or an empty relation of its schema."""
        pattern = f"{table}/*/*/*.parquet"
        self._empty_tables.discard(table)
        if self.storage.glob(pattern):
            path = self.storage.path(pattern).replace("'", "''")
            return (
                f"SELECT * FROM read_parquet('{path}', hive_partitioning = true, "
                "hive_types = {'experiment': VARCHAR, 'run': VARCHAR})"
            )
        columns = [
            f'NULL::{_DUCKDB_TYPES[str(field.type)]} AS "{field.name}"'
            for field in format.arrow_schema(table)
        ]
        columns += [f"NULL::VARCHAR AS {key}" for key in format.PARTITION_KEYS]
        self._empty_tables.add(table)
        return f"SELECT {', '.join(columns)} WHERE false"

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        """Run a SQL query over the store's views.

        The result is a DuckDB relation: ``.arrow()``, ``.pl()``, ``.df()``, ``.fetchall()``,
        ``.write_csv(path)``, ``.write_parquet(path)``.
        """
        import duckdb

        try:
            for table in list(self._empty_tables):  # tables that got their first files
                self._create_log_view(table)
            return self.connection.sql(query, params=params)
        except duckdb.Error as error:
            raise QueryError(f"{type(error).__name__}: {error}") from None

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(
    uri: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None
) -> Store:
    """Open the store at ``uri`` for querying (default: the store runs are written to)."""
    from lakestore import tracking

    if uri is None:
        uri = tracking.get_store_uri()
        storage_options = (
            tracking.get_store_options() if storage_options is None else storage_options
        )
    storage = open_storage(uri, storage_options)
    if storage.get(format.MARKER_FILE) is None:
        raise StoreError(
            f"no lakestore store at {storage.url}: log a run there first, "
            "or pass the store's location (--store / $LAKESTORE_URI)"
        )
    return Store(storage)
