"""Heartbeats: an open run's writers log RUNNING events while they live."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import lakestore


def _heartbeats(store_uri: str, run_id: str) -> int:
    with lakestore.connect(store_uri) as store:
        rows = store.sql(
            "SELECT count(*) FROM runs_log WHERE run = $1 AND status = 'RUNNING'", [run_id]
        ).fetchall()
    return rows[0][0]


def test_an_idle_open_run_logs_heartbeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKESTORE_HEARTBEAT_INTERVAL", "0.1")
    store_uri = str(tmp_path / "store")
    with lakestore.start_run(store=store_uri, flush_interval=60) as run:
        deadline = time.monotonic() + 60
        while _heartbeats(store_uri, run.run_id) < 4:  # the start event and 3 heartbeats
            assert time.monotonic() < deadline, "no heartbeat was written"
            time.sleep(0.05)
    with lakestore.connect(store_uri) as store:
        assert store.sql("SELECT status, end_time IS NOT NULL FROM runs").fetchall() == [
            ("FINISHED", True)
        ]
        names = store.sql(
            "SELECT DISTINCT run_name, writer_id FROM runs_log WHERE run = $1", [run.run_id]
        ).fetchall()
    assert names == [(run.run_name, run._writer.writer_id)]


def test_logging_events_are_heartbeats_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKESTORE_HEARTBEAT_INTERVAL", "3600")
    store_uri = str(tmp_path / "store")
    with lakestore.start_run(store=store_uri, flush_interval=0.05) as run:
        run.log_metric("loss", 1.0)
        time.sleep(0.3)
        assert _heartbeats(store_uri, run.run_id) == 1  # only the start event


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_heartbeat_interval_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval: str
) -> None:
    monkeypatch.setenv("LAKESTORE_HEARTBEAT_INTERVAL", interval)
    with pytest.raises(lakestore.LakestoreError, match="LAKESTORE_HEARTBEAT_INTERVAL"):
        lakestore.start_run(store=str(tmp_path / "store"))
