"""Read a store the way docs/FORMAT.md tells direct readers to, with no lakestore code.

Each reader follows the read protocol: list the table's inbox files, then take each
experiment's newest snapshot (the greatest name in its snapshots folder), read the parts it
names, and read the listed inbox files whose name holds a sequence number greater than the
one through which the snapshot says their writer is merged (the others are never opened: a
merge may delete them at any moment). ``listed``, if given, is called between listing the
inbox and listing the snapshots, to let a test run merges there.

Each function returns a table's rows as sorted tuples (NaN replaced by the string "NaN",
so that rows compare equal), ``experiment`` and ``run`` first, without the ``seq`` column.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs
import s3fs


def _normalise(table: pa.Table) -> list[tuple[Any, ...]]:
    names = [
        "experiment",
        "run",
        *[n for n in table.column_names if n not in ("experiment", "run", "seq")],
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


def _glob(uri: str, pattern: str) -> list[str]:
    """The files ``pattern`` matches, as URLs (DuckDB and Polars refuse an empty glob)."""
    if _is_s3(uri):
        return [f"s3://{path}" for path in _s3fs().glob(f"{uri}/{pattern}")]
    import glob

    return glob.glob(f"{glob.escape(uri)}/{pattern}")


def _has(uri: str, pattern: str) -> bool:
    return bool(_glob(uri, pattern))


SNAPSHOTS = "experiments/*/snapshots/*.parquet"


def newest_snapshots(uri: str) -> list[str]:
    """Each experiment's newest snapshot: the greatest name in its snapshots folder."""
    newest: dict[str, str] = {}
    for path in _glob(uri, SNAPSHOTS):
        folder = path.rsplit("/", 1)[0]
        newest[folder] = max(newest.get(folder, ""), path)
    return sorted(newest.values())


INBOX_NAME = re.compile(r"\.([0-9a-f]{32})-([0-9]+)\.parquet$")


def unmerged(inbox_files: list[str], merged: dict[str, int]) -> list[str]:
    """The inbox files whose rows the snapshot's parts do not hold, told by their names
    (``<run id>.<writer id>-<seq>.parquet``); ``merged`` maps writer ids to merged_through."""
    files = []
    for path in inbox_files:
        if (found := INBOX_NAME.search(path)) and int(found[2]) > merged.get(found[1], -1):
            files.append(path)
    return files


def has_files(uri: str, table: str) -> bool:
    """True if the table holds at least one data file."""
    return _has(uri, _inbox(table)) or _has(uri, f"experiments/*/parts/{table}/*.parquet")


def _inbox(table: str) -> str:
    return f"experiments/*/inbox/{table}/*.parquet"


Listed = Callable[[], None] | None


def read_duckdb(uri: str, table: str, listed: Listed = None) -> list[tuple[Any, ...]]:
    connection = duckdb.connect()
    if _is_s3(uri):
        connection.register_filesystem(_s3fs())
    name = "'\\.([0-9a-f]{32})-([0-9]+)\\.parquet$'"
    connection.execute(
        f"CREATE TABLE inbox AS SELECT file, regexp_extract(file, {name}, ['writer_id', 'seq']) "
        f"AS name FROM glob('{uri}/{_inbox(table)}') WHERE regexp_matches(file, {name})"
    )
    if listed:
        listed()
    connection.execute(
        "CREATE TABLE snapshot (experiment VARCHAR, generation BIGINT, kind VARCHAR, "
        '"table" VARCHAR, path VARCHAR, writer_id VARCHAR, merged_through BIGINT)'
    )
    if _has(uri, SNAPSHOTS):
        connection.execute(
            "SET VARIABLE snapshots = (SELECT list(newest) FROM (SELECT max(file) AS newest "
            f"FROM glob('{uri}/{SNAPSHOTS}') GROUP BY parse_dirpath(file)))"
        )
        connection.execute(
            'INSERT INTO snapshot SELECT experiment, generation, kind, "table", path, '
            "writer_id, merged_through FROM read_parquet(getvariable('snapshots'))"
        )
    connection.execute(
        f"SET VARIABLE parts = (SELECT list('{uri}/' || path) FROM snapshot "
        f"WHERE kind = 'part' AND \"table\" = '{table}')"
    )
    connection.execute(
        "SET VARIABLE unmerged = (SELECT list(file) FROM inbox LEFT JOIN snapshot "
        "ON kind = 'merged' AND writer_id = name.writer_id "
        "WHERE merged_through IS NULL OR name.seq::BIGINT > merged_through)"
    )
    selects = [
        f"SELECT * FROM read_parquet(getvariable('{files}'))"
        for files in ("parts", "unmerged")
        if connection.sql(f"SELECT len(getvariable('{files}'))").fetchall()[0][0]
    ]
    result = connection.sql(" UNION ALL ".join(selects)).to_arrow_table()
    return _normalise(result)


def _polars_options(uri: str) -> dict[str, str] | None:
    if not _is_s3(uri):
        return None
    return {
        "aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "aws_region": "us-east-1",
        "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
        "aws_allow_http": "true",
    }


MERGED = ["writer_id", "merged_through"]


def read_polars(uri: str, table: str, listed: Listed = None) -> list[tuple[Any, ...]]:
    options = _polars_options(uri)
    inbox_files = _glob(uri, _inbox(table))
    if listed:
        listed()
    files = []
    merged: dict[str, int] = {}
    if snapshots := newest_snapshots(uri):
        snapshot = pl.read_parquet(snapshots, storage_options=options)
        parts = snapshot.filter((pl.col("kind") == "part") & (pl.col("table") == table))
        files += [f"{uri}/{path}" for path in parts["path"]]
        merged = dict(snapshot.filter(pl.col("kind") == "merged").select(MERGED).iter_rows())
    files += unmerged(inbox_files, merged)
    return _normalise(pl.read_parquet(files, storage_options=options).to_arrow())


def read_pyarrow(uri: str, table: str, listed: Listed = None) -> list[tuple[Any, ...]]:
    if _is_s3(uri):
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        filesystem: pyarrow.fs.FileSystem = pyarrow.fs.S3FileSystem(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=endpoint.split("://", 1)[1],
            scheme="http",
            region="us-east-1",
        )
        root = uri[len("s3://") :]
    else:
        filesystem, root = pyarrow.fs.LocalFileSystem(), uri

    def parquet_files(pattern: str) -> list[str]:
        selector = pyarrow.fs.FileSelector(f"{root}/experiments", recursive=True)
        listing = filesystem.get_file_info(selector)
        start = len(root) + 1
        return [i.path for i in listing if fnmatch.fnmatch(i.path[start:], pattern)]

    inbox_files = parquet_files(_inbox(table))
    if listed:
        listed()
    newest_files: dict[str, str] = {}  # each experiment's newest snapshot: the greatest name
    for path in parquet_files(SNAPSHOTS):
        folder = path.rsplit("/", 1)[0]
        newest_files[folder] = max(newest_files.get(folder, ""), path)
    snapshot_files = list(newest_files.values())
    files = []
    merged: dict[str, int] = {}
    if snapshot_files:
        snapshot = ds.dataset(snapshot_files, format="parquet", filesystem=filesystem).to_table()
        rows = snapshot.to_pylist()
        files += [
            f"{root}/{row['path']}"
            for row in rows
            if row["kind"] == "part" and row["table"] == table
        ]
        merged = {
            row["writer_id"]: row["merged_through"] for row in rows if row["kind"] == "merged"
        }
    files += unmerged(inbox_files, merged)
    return _normalise(ds.dataset(files, format="parquet", filesystem=filesystem).to_table())


READERS = {"duckdb": read_duckdb, "polars": read_polars, "pyarrow": read_pyarrow}


def read_dask(uri: str, table: str, listed: Listed = None) -> list[tuple[Any, ...]]:
    import dask.dataframe as dd

    def read(paths: str | list[str]) -> dd.DataFrame:
        return dd.read_parquet(
            paths,
            dtype_backend="pyarrow",  # keeps null apart from NaN
            dataset={"partitioning": None},
            storage_options={"use_listings_cache": False} if _is_s3(uri) else None,
        )

    inbox_files = _glob(uri, _inbox(table))
    if listed:
        listed()
    files = []
    merged: dict[str, int] = {}
    if snapshots := newest_snapshots(uri):
        snapshot = read(snapshots).compute()
        parts = snapshot[(snapshot["kind"] == "part") & (snapshot["table"] == table)]
        files += [f"{uri}/{path}" for path in parts["path"]]
        merged = dict(snapshot.loc[snapshot["kind"] == "merged", MERGED].itertuples(index=False))
    files += unmerged(inbox_files, merged)
    result = read(files).compute()
    return _normalise(pa.Table.from_pandas(result, preserve_index=False))


def read_spark(uri: str, table: str, listed: Listed = None) -> list[tuple[Any, ...]]:
    """Local stores only: Spark reads S3 through the hadoop-aws jars, not installed here."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as sf

    inbox_files = _glob(uri, _inbox(table))
    if listed:
        listed()
    # recursiveFileLookup turns partition inference off.
    reader = SparkSession.active().read.option("recursiveFileLookup", "true")
    files = []
    merged: dict[str, int] = {}
    if snapshots := newest_snapshots(uri):
        snapshot = reader.parquet(*snapshots)
        parts = snapshot.where((sf.col("kind") == "part") & (sf.col("table") == table)).collect()
        files += [f"{uri}/{row.path}" for row in parts]
        merged = dict(snapshot.where(sf.col("kind") == "merged").select(*MERGED).collect())
    files += unmerged(inbox_files, merged)
    return _normalise(reader.parquet(*files).toArrow())
