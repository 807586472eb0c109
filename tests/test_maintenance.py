"""Maintenance: the temporary files of a writer killed mid-write are invisible, then cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

import lakestore
from lakestore.errors import InvalidValueError
from lakestore_cli.main import app

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import lakestore

    run = lakestore.start_run(store=sys.argv[1], experiment="e", flush_interval=3600)
    run.log_metric("kept", 1.0)
    run.flush()
    run.log_metric_series("big", np.zeros(8_000_000))  # two 4M-row files: time to catch one
    print("writing", flush=True)
    run.flush()
    """
)


def _temporary_files(root: Path) -> list[Path]:
    return [path for path in root.rglob(".*.tmp") if path.is_file()]


def _kill_while_writing(root: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        deadline = time.monotonic() + 60
        while not _temporary_files(root) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()


def test_a_writer_killed_mid_write_leaves_temporary_files_that_clean_removes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    _kill_while_writing(root)
    leftovers = _temporary_files(root)
    assert leftovers, "the writer was not killed while writing a file"
    inbox = root / "experiments" / "e" / "inbox" / "metrics"
    assert {path.parent for path in leftovers} == {inbox}
    files = f"{inbox}/*.parquet"
    counts = {  # every reader reads the store (counting: the big file may have landed)
        "duckdb": duckdb.sql(f"SELECT count(*) FROM read_parquet('{files}')").fetchall()[0][0],
        "polars": pl.scan_parquet(files).select(pl.len()).collect().item(),
        "pyarrow": ds.dataset(inbox, format="parquet").count_rows(),
    }
    assert len(set(counts.values())) == 1, counts
    assert counts["duckdb"] in (1, 4_000_001, 8_000_001)  # whole files only
    with lakestore.connect(str(root)) as store:
        assert store.sql("SELECT count(*) FROM metrics WHERE key = 'kept'").fetchall() == [(1,)]

    assert lakestore.clean(str(root)) == 0  # too recent: a live writer may be writing them
    result = CliRunner().invoke(app, ["clean", "-s", str(root), "--older-than", "0"])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"removed {len(leftovers)} temporary file(s)\n"
    assert _temporary_files(root) == []
    with lakestore.connect(str(root)) as store:
        assert store.sql("SELECT count(*) FROM metrics WHERE key = 'kept'").fetchall() == [(1,)]


@pytest.mark.parametrize("older_than", [-1.0, float("nan")])
def test_clean_refuses_a_negative_age(tmp_path: Path, older_than: float) -> None:
    with lakestore.start_run(store=str(tmp_path)):
        pass
    with pytest.raises(InvalidValueError, match="older_than"):
        lakestore.clean(str(tmp_path), older_than=older_than)


def test_clean_on_s3_has_nothing_to_remove(s3_env: str) -> None:
    from tests.conftest import make_bucket

    uri = f"s3://{make_bucket(s3_env)}/store"
    with lakestore.start_run(store=uri):
        pass
    assert lakestore.clean(uri, older_than=0) == 0
