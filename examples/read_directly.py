"""Read a store with DuckDB and with Polars alone: no lakestore import (docs/FORMAT.md).

python examples/read_directly.py [STORE]     # default: ./lakestore-data
"""

import sys

import duckdb
import polars as pl

store = sys.argv[1] if len(sys.argv) > 1 else "lakestore-data"

# DuckDB: declare the partition columns as strings, so that no name is read as a number.
print(
    duckdb.sql(
        f"""
        SELECT experiment, run, key, count(*) AS points, max(step) AS last_step
        FROM read_parquet('{store}/metrics/*/*/*.parquet', hive_partitioning = true,
                          hive_types = {{'experiment': VARCHAR, 'run': VARCHAR}})
        GROUP BY ALL ORDER BY experiment, run, key
        """
    )
)

# Polars: the same, lazily; the latest status of each run from the append-only run events
# (enough for runs with one writer; FORMAT.md gives the rule for several).
partitions = {"experiment": pl.String, "run": pl.String}
events = pl.scan_parquet(
    f"{store}/runs/**/*.parquet", hive_partitioning=True, hive_schema=partitions
)
print(
    events.sort("event_time")
    .group_by("experiment", "run")
    .agg(pl.col("status").last(), pl.col("run_name").drop_nulls().last())
    .sort("experiment", "run")
    .collect()
)
