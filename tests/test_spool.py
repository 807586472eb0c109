"""Object-store outages: the S3 endpoint goes down mid-run, and nothing logged is lost.

The outage is real: the writers reach the S3 server through a TCP proxy (tests/tcp_proxy.py)
that the tests kill and start again, so connections are refused while the server keeps the
files written before. Writers are real processes, killed with SIGKILL where the test says.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakestore
from lakestore.spool import Spool
from tests.conftest import make_bucket

HERE = Path(__file__).parent
FAIL_FAST = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}


class Outage:
    """An S3 store reached through a proxy that can be stopped and started again."""

    def __init__(self, endpoint: str, store_uri: str, spool_dir: Path) -> None:
        self.target_port = int(endpoint.rsplit(":", 1)[1])
        self.port = 0
        self.uri = store_uri
        self.spool_dir = spool_dir
        self.proxy: subprocess.Popen[str] | None = None

    def up(self) -> None:
        self.proxy = subprocess.Popen(
            [sys.executable, str(HERE / "tcp_proxy.py"), str(self.port), str(self.target_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proxy.stdout is not None
        self.port = int(self.proxy.stdout.readline().split()[-1])

    def down(self) -> None:
        assert self.proxy is not None
        self.proxy.kill()
        self.proxy.wait()
        self.proxy = None

    def freeze(self) -> None:
        """A hanging store: connections are accepted (by the kernel) and never answered."""
        assert self.proxy is not None
        self.proxy.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proxy is not None
        self.proxy.send_signal(signal.SIGCONT)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def options(self) -> dict[str, object]:
        """Storage options for this process: fail fast, and no filesystem cached for
        another test's endpoint (the environment is not part of fsspec's cache key)."""
        return {**FAIL_FAST, "endpoint_url": self.endpoint}

    def spooled(self) -> list[str]:
        return Spool(self.uri, str(self.spool_dir)).pending()


@pytest.fixture
def outage(s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    """An S3 store behind a proxy; its URL and spool dir are in the environment of children."""
    outage = Outage(s3_env, f"s3://{make_bucket(s3_env)}/store", tmp_path / "spool")
    outage.up()
    monkeypatch.setenv("AWS_ENDPOINT_URL", outage.endpoint)
    monkeypatch.setenv("LAKESTORE_SPOOL_DIR", str(outage.spool_dir))
    yield outage
    if outage.proxy is not None:
        outage.down()


def _child(mode: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "child_writer.py"), mode, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_counts(child: subprocess.Popen[str], flushes: int) -> int:
    """Wait for ``flushes`` more explicit flushes of the child; the points logged by then."""
    assert child.stdout is not None
    count = 0
    for _ in range(flushes):
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        count = int(line)
    return count


def _steps(outage: Outage) -> tuple[int, int, int]:
    """Rows, distinct steps and the greatest step + 1 of metric "loss"."""
    with lakestore.connect(outage.uri, storage_options=outage.options) as store:
        rows, distinct, top = store.sql(
            "SELECT count(*), count(DISTINCT step), max(step) + 1 FROM metrics"
        ).fetchall()[0]
    return rows, distinct, top


@pytest.mark.slow
def test_a_run_outlives_a_30_second_outage_and_loses_nothing(outage: Outage) -> None:
    child = _child("steady", outage.uri)
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    _read_counts(child, 3)
    outage.down()
    deadline = time.monotonic() + 30
    during = _read_counts(child, 1)
    while time.monotonic() < deadline:  # the training loop goes on, flushes return
        during = _read_counts(child, 1)
    assert outage.spooled(), "the files of the outage wait in the spool"
    outage.up()
    after = _read_counts(child, 3)
    assert after > during
    child.stdin.write("stop\n")  # type: ignore[union-attr]
    child.stdin.flush()  # type: ignore[union-attr]
    line = child.stdout.readline().strip()
    while line.isdigit():  # flushes that ended before the child read "stop"
        line = child.stdout.readline().strip()
    assert line == "ended"
    assert child.wait(timeout=60) == 0

    rows, distinct, top = _steps(outage)
    assert rows == distinct == top >= after
    assert outage.spooled() == []
    with lakestore.connect(outage.uri, storage_options=outage.options) as store:
        assert store.sql("SELECT run_id, status FROM runs").fetchall() == [(run_id, "FINISHED")]


@pytest.mark.slow
def test_a_crash_during_an_outage_loses_nothing_that_reached_the_spool(
    outage: Outage, tmp_path: Path
) -> None:
    child = _child("forever", outage.uri, "0.1")
    assert child.stdout is not None
    child.stdout.readline()  # the run id
    _read_counts(child, 2)
    outage.down()
    spooled = _read_counts(child, 5)  # flushed while the store is down: in the spool
    child.send_signal(signal.SIGKILL)
    child.wait()
    outage.up()

    copy = tmp_path / "spool-copy"
    shutil.copytree(outage.spool_dir, copy)
    sync = subprocess.run(
        ["lakestore", "sync", "--store", outage.uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    assert "uploaded 0 " not in sync.stderr
    assert outage.spooled() == []
    rows, distinct, top = _steps(outage)
    assert rows == distinct == top >= spooled  # a gapless prefix, no duplicates

    # The same spool uploaded again (say, by two machines' syncs) duplicates nothing.
    shutil.rmtree(outage.spool_dir)
    shutil.copytree(copy, outage.spool_dir)
    assert lakestore.sync(outage.uri, storage_options=outage.options) > 0
    assert _steps(outage) == (rows, distinct, top)


def test_a_run_ended_during_an_outage_is_uploaded_by_the_next_run(outage: Outage) -> None:
    run = lakestore.start_run(store=outage.uri, flush_interval=0.05, storage_options=outage.options)
    run.log_metrics({"loss": 1.0, "acc": 0.5}, step=0)
    run.flush()
    outage.down()
    for step in range(1, 1000):
        run.log_metric("loss", float(step), step=step)
    run.end()  # the store is down: the rest waits in the spool, nothing is raised
    assert run.status == "FINISHED"
    assert outage.spooled()

    outage.up()
    with lakestore.start_run(store=outage.uri, storage_options=outage.options):
        pass  # uploads what the spool holds for this store
    assert outage.spooled() == []
    with lakestore.connect(outage.uri, storage_options=outage.options) as store:
        assert store.sql(
            "SELECT count(*), count(DISTINCT step) FROM metrics WHERE key = 'loss'"
        ).fetchall() == [(1000, 1000)]
        assert store.sql("SELECT status FROM runs WHERE run_id = $1", [run.run_id]).fetchall() == [
            ("FINISHED",)
        ]


def test_spooled_files_upload_in_order_so_a_run_never_ends_before_its_data(
    outage: Outage,
) -> None:
    run = lakestore.start_run(store=outage.uri, flush_interval=60, storage_options=outage.options)
    outage.down()
    run.log_metric("loss", 1.0, step=1)
    run.end()
    pending = outage.spooled()
    assert [path.split("/")[3] for path in pending] == ["metrics", "runs"]
    assert pending == sorted(pending, key=lambda path: path.rsplit("-", 1)[1])


def test_sync_of_a_local_store_or_an_empty_spool_uploads_nothing(
    outage: Outage, tmp_path: Path
) -> None:
    with lakestore.start_run(store=str(tmp_path / "local")) as run:
        run.log_metric("loss", 1.0)
    assert lakestore.sync(str(tmp_path / "local")) == 0
    with lakestore.start_run(store=outage.uri, storage_options=outage.options) as run:
        run.log_metric("loss", 1.0)
    assert lakestore.sync(outage.uri, storage_options=outage.options) == 0


def test_sync_while_the_store_is_down_says_so_and_keeps_the_spool(outage: Outage) -> None:
    run = lakestore.start_run(store=outage.uri, flush_interval=60, storage_options=outage.options)
    outage.down()
    run.log_metric("loss", 1.0)
    run.end()
    pending = outage.spooled()
    with pytest.raises(lakestore.LakestoreError, match="run lakestore sync again"):
        lakestore.sync(outage.uri, storage_options=outage.options)
    assert outage.spooled() == pending


@pytest.mark.slow
def test_a_store_that_hangs_is_treated_as_down_and_nothing_is_lost(outage: Outage) -> None:
    run = lakestore.start_run(store=outage.uri, flush_interval=0.1, storage_options=outage.options)
    outage.freeze()
    try:
        for step in range(3000):
            run.log_metric("loss", float(step), step=step)
            if step % 1000 == 999:
                run.flush()  # returns once the store has had UPLOAD_PATIENCE to answer
        assert outage.spooled(), "files the hanging store did not take wait in the spool"
    finally:
        outage.thaw()
    run.end()
    assert outage.spooled() == []
    assert _steps(outage) == (3000, 3000, 3000)
