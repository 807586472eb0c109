"""Read a store with DuckDB and with Polars alone: no lakestore import (docs/FORMAT.md).

python examples/read_directly.py [STORE]     # default: ./lakestore-data

A table is its run files (partitioned by experiment and run) plus, once compacted, its
parts (partitioned by experiment, with a run column); read whichever hold files.
"""

import glob
import sys

import duckdb
import polars as pl

store = sys.argv[1] if len(sys.argv) > 1 else "lakestore-data"


def has_files(pattern: str) -> bool:
    return bool(glob.glob(f"{glob.escape(store)}/{pattern}"))


# DuckDB: declare the partition columns as strings, so that no name is read as a number.
sources = []
if has_files("metrics/*/*/*.parquet"):
    sources.append(
        f"SELECT * FROM read_parquet('{store}/metrics/*/*/*.parquet', hive_partitioning = true, "
        "hive_types = {'experiment': VARCHAR, 'run': VARCHAR})"
    )
if has_files("compacted/metrics/*/*.parquet"):
    sources.append(
        f"SELECT * FROM read_parquet('{store}/compacted/metrics/*/*.parquet', "
        "hive_partitioning = true, hive_types = {'experiment': VARCHAR})"
    )
print(
    duckdb.sql(
        f"""
        SELECT experiment, run, key, count(*) AS points, max(step) AS last_step
        FROM ({" UNION ALL BY NAME ".join(sources)})
        GROUP BY ALL ORDER BY experiment, run, key
        """
    )
)

# Polars: the same, lazily; the latest status of each run from the append-only run events
# (enough for runs with one writer; FORMAT.md gives the rule for several).
frames = []
if has_files("runs/*/*/*.parquet"):
    frames.append(
        pl.scan_parquet(
            f"{store}/runs/**/*.parquet",
            hive_partitioning=True,
            hive_schema={"experiment": pl.String, "run": pl.String},
        )
    )
if has_files("compacted/runs/*/*.parquet"):
    frames.append(
        pl.scan_parquet(
            f"{store}/compacted/runs/**/*.parquet",
            hive_partitioning=True,
            hive_schema={"experiment": pl.String},
        )
    )
events = pl.concat(frames, how="diagonal")
print(
    events.sort("event_time")
    .group_by("experiment", "run")
    .agg(pl.col("status").last(), pl.col("run_name").drop_nulls().last())
    .sort("experiment", "run")
    .collect()
)
