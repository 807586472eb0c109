"""Dask and Spark, following the read recipe of docs/FORMAT.md (tests/readers.py), read the
rows DuckDB reads: as logged, after a merge, and with rows both in parts and in the inbox."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

import lakestore
from lakestore.storage import open_storage
from tests.readers import read_dask, read_duckdb, read_spark

TABLES = ("runs", "params", "metrics", "tags")

Reader = Callable[[str, str], list[tuple[Any, ...]]]


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark session for the whole test session: its JVM takes seconds to start."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        session = (
            SparkSession.builder.master("local[2]")
            .appName("lakestore-tests")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("WARN")
        yield session
        session.stop()


def _files(uri: str, kind: str, table: str = "*") -> list[str]:
    return open_storage(uri).glob(f"experiments/*/{kind}/{table}/*.parquet")


def _inbox_files(uri: str) -> dict[str, int]:
    return {table: len(_files(uri, "inbox", table)) for table in TABLES}


def _same_as_duckdb(uri: str, read: Reader) -> dict[str, list[tuple[Any, ...]]]:
    rows = {}
    for table in TABLES:
        expected = read_duckdb(uri, table)
        assert read(uri, table) == expected, table
        assert {row[0] for row in expected} == {"001"}, table
        rows[table] = expected
    return rows


def _check_every_stage(uri: str, read: Reader) -> None:
    with lakestore.start_run(
        store=uri, experiment="001", run_name="first", tags={"team": "vision"}
    ) as run:
        run.log_params({"lr": 0.001, "optimizer": "adam"})
        run.log_metric("loss", math.nan)
        run.log_metric_series("accuracy", [0.5, 0.75, 0.875])
    assert not _files(uri, "parts")
    logged = _same_as_duckdb(uri, read)
    assert ("loss", "NaN", 0) in [row[2:5] for row in logged["metrics"]]
    assert ("optimizer", "adam", None) in [row[2:5] for row in logged["params"]]

    lakestore.compact(uri, grace=3600)
    assert all(_files(uri, "parts", table) for table in TABLES)
    merged_inbox = _inbox_files(uri)
    assert all(merged_inbox.values()), "the merged inbox files stay for the grace period"
    assert _same_as_duckdb(uri, read) == logged

    with lakestore.start_run(run.run_id, store=uri) as resumed:
        resumed.log_param("epochs", 3)
        resumed.log_metric("loss", 0.25, step=1)
        resumed.set_tag("team", "nlp")
    assert all(_inbox_files(uri)[table] > merged_inbox[table] for table in TABLES)
    both = _same_as_duckdb(uri, read)
    assert all(len(both[table]) > len(logged[table]) for table in TABLES)


def test_dask_reads_what_duckdb_reads(store_uri: str) -> None:
    _check_every_stage(store_uri, read_dask)


@pytest.mark.slow
@pytest.mark.usefixtures("spark")
def test_spark_reads_what_duckdb_reads(tmp_path: Path) -> None:
    _check_every_stage(str(tmp_path / "store"), read_spark)
