"""Read a store the way docs/FORMAT.md tells direct readers to, with no lakestore code.

Each function returns a table's rows as sorted tuples (NaN replaced by the string "NaN",
so that rows compare equal), partition columns ``experiment`` and ``run`` first. The
writer of each row comes from the ``writer_id`` column of parts and, for run files of
params, metrics and tags, from the file's name, as FORMAT.md says.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import s3fs

WRITER_FROM_NAME = r"([0-9a-f]{32})-[0-9]+\.parquet$"


def _normalise(table: pa.Table) -> list[tuple[Any, ...]]:
    names = [
        "experiment",
        "run",
        *[n for n in table.column_names if n not in ("experiment", "run")],
    ]
    rows = []
    for row in table.select(names).to_pylist():
        rows.append(
            tuple(
                "NaN" if isinstance(value, float) and math.isnan(value) else value
                for value in row.values()
            )
        )
    return sorted(rows, key=repr)


def _is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _s3fs() -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(use_listings_cache=False)


def _has(uri: str, pattern: str) -> bool:
    if _is_s3(uri):
        return bool(_s3fs().glob(f"{uri}/{pattern}"))
    import glob

    return bool(glob.glob(f"{glob.escape(uri)}/{pattern}"))


def has_files(uri: str, table: str) -> bool:
    """True if the table holds at least one data file (readers fail on an empty glob)."""
    return _has(uri, f"{table}/*/*/*.parquet") or _has(uri, f"compacted/{table}/*/*.parquet")


def read_duckdb(uri: str, table: str) -> list[tuple[Any, ...]]:
    connection = duckdb.connect()
    if _is_s3(uri):
        connection.register_filesystem(_s3fs())
    selects = []
    if _has(uri, f"{table}/*/*/*.parquet"):
        columns = "*"
        if table != "runs":  # the writer of a row is in its file's name
            writer = f"regexp_extract(filename, '{WRITER_FROM_NAME}', 1)"
            columns = f"* EXCLUDE (filename), {writer} AS writer_id"
        selects.append(
            f"SELECT {columns} FROM read_parquet('{uri}/{table}/*/*/*.parquet', "
            "hive_partitioning = true, hive_types = {'experiment': VARCHAR, 'run': VARCHAR}, "
            f"filename = {table != 'runs'})"
        )
    if _has(uri, f"compacted/{table}/*/*.parquet"):
        selects.append(
            f"SELECT * FROM read_parquet('{uri}/compacted/{table}/*/*.parquet', "
            "hive_partitioning = true, hive_types = {'experiment': VARCHAR})"
        )
    result = connection.sql(" UNION ALL BY NAME ".join(selects)).to_arrow_table()
    return _normalise(result)


def read_polars(uri: str, table: str) -> list[tuple[Any, ...]]:
    options = None
    if _is_s3(uri):
        options = {
            "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "aws_region": "us-east-1",
            "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
            "aws_allow_http": "true",
        }
    frames = []
    if _has(uri, f"{table}/*/*/*.parquet"):
        run_files = pl.scan_parquet(
            f"{uri}/{table}/**/*.parquet",
            hive_partitioning=True,
            hive_schema={"experiment": pl.String, "run": pl.String},
            storage_options=options,
            include_file_paths="path",
        )
        if table != "runs":
            writer = pl.col("path").str.extract(WRITER_FROM_NAME, 1).alias("writer_id")
            run_files = run_files.with_columns(writer)
        frames.append(run_files.drop("path"))
    if _has(uri, f"compacted/{table}/*/*.parquet"):
        frames.append(
            pl.scan_parquet(
                f"{uri}/compacted/{table}/**/*.parquet",
                hive_partitioning=True,
                hive_schema={"experiment": pl.String},
                storage_options=options,
            )
        )
    return _normalise(pl.concat(frames, how="diagonal").collect().to_arrow())


def read_pyarrow(uri: str, table: str) -> list[tuple[Any, ...]]:
    filesystem = None
    root = uri
    if _is_s3(uri):
        from pyarrow.fs import S3FileSystem

        endpoint = os.environ["AWS_ENDPOINT_URL"]
        filesystem = S3FileSystem(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=endpoint.split("://", 1)[1],
            scheme="http",
            region="us-east-1",
        )
        root = uri[len("s3://") :]
    tables = []
    if _has(uri, f"{table}/*/*/*.parquet"):
        partitioning = ds.partitioning(
            pa.schema([("experiment", pa.string()), ("run", pa.string())]), flavor="hive"
        )
        dataset = ds.dataset(
            f"{root}/{table}", format="parquet", partitioning=partitioning, filesystem=filesystem
        )
        for fragment in dataset.get_fragments():
            rows = fragment.to_table(schema=dataset.schema)
            if table != "runs":
                writer = re.search(WRITER_FROM_NAME, fragment.path)
                assert writer is not None
                rows = rows.append_column(
                    "writer_id", pa.array([writer.group(1)] * len(rows), pa.string())
                )
            tables.append(rows)
    if _has(uri, f"compacted/{table}/*/*.parquet"):
        partitioning = ds.partitioning(pa.schema([("experiment", pa.string())]), flavor="hive")
        dataset = ds.dataset(
            f"{root}/compacted/{table}",
            format="parquet",
            partitioning=partitioning,
            filesystem=filesystem,
        )
        tables.append(dataset.to_table())
    return _normalise(pa.concat_tables(tables, promote_options="default"))


READERS = {"duckdb": read_duckdb, "polars": read_polars, "pyarrow": read_pyarrow}
