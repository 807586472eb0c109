"""System metrics: a run samples its machine in the background and logs the figures as
ordinary metrics under MLflow's names, stops with the run, and survives sources that fail."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest

import lakestore
from lakestore import system_metrics
from lakestore.errors import InvalidValueError

HOST_METRICS = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
}
GPU_FIGURES = {
    "utilization_percentage": 42.0,
    "memory_usage_megabytes": 1000.0,
    "memory_usage_percentage": 25.0,
    "power_usage_watts": 150.0,
    "power_usage_percentage": 50.0,
}
"""What the stub NVML below reports for each GPU, under MLflow's names."""


def _samples(run: lakestore.Run, count: int) -> None:
    """Wait (however loaded the machine) until ``run`` has logged ``count`` samples."""
    sampler = run._sampler
    assert sampler is not None
    deadline = time.monotonic() + 120
    while sampler.step < count:
        assert time.monotonic() < deadline, f"{sampler.step} samples in 120 s"
        time.sleep(0.02)


def _sampling(store_uri: str) -> lakestore.Run:
    """A run of ``store_uri`` that samples the machine every 0.05 s."""
    return lakestore.start_run(
        store=store_uri, log_system_metrics=True, system_metrics_interval=0.05
    )


def _system_rows(store_uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Each system metric of the run: its (step, value) points in step order."""
    with lakestore.connect(store_uri) as store:
        rows = store.sql(
            "SELECT key, step, value FROM metrics WHERE run_id = $1 AND key LIKE 'system/%' "
            "ORDER BY key, step",
            [run_id],
        ).fetchall()
    points: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in rows:
        points.setdefault(key, []).append((step, value))
    return points


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == system_metrics.THREAD_NAME]


def test_a_run_logs_plausible_host_metrics_until_it_ends(store_uri: str) -> None:
    with lakestore.start_run(
        store=store_uri, experiment="e", log_system_metrics=True, system_metrics_interval=0.1
    ) as run:
        assert len(_sampler_threads()) == 1
        _samples(run, 3)
        run.log_metric("loss", 0.5)
    assert _sampler_threads() == []
    points = _system_rows(store_uri, run.run_id)
    assert set(points) == HOST_METRICS
    counts = {len(series) for series in points.values()}
    assert len(counts) == 1
    assert counts.pop() >= 3
    for key, series in points.items():
        assert [step for step, _ in series] == list(range(len(series))), key
        values = [value for _, value in series]
        if key.endswith("_percentage"):
            assert all(0 <= v <= 100 for v in values), (key, values)
        else:
            assert all(v >= 0 for v in values), (key, values)
    memory = psutil.virtual_memory().total / 1e6
    assert all(0 < v < memory for _, v in points["system/system_memory_usage_megabytes"])
    disk = psutil.disk_usage(os.sep)
    used_and_free = [
        a + b
        for (_, a), (_, b) in zip(
            points["system/disk_usage_megabytes"],
            points["system/disk_available_megabytes"],
            strict=True,
        )
    ]
    assert all(v <= disk.total / 1e6 * 1.01 for v in used_and_free)
    with lakestore.connect(store_uri) as store:  # plain metrics: searchable like any other
        found = store.search_runs("metrics.`system/cpu_utilization_percentage` >= 0")
        assert found.select("run_id").fetchall() == [(run.run_id,)]


def test_a_run_shorter_than_the_interval_logs_one_sample_as_it_ends(tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    with lakestore.start_run(store=store_uri, log_system_metrics=True) as run:
        assert run._sampler is not None
        assert run._sampler.interval == 10.0
        time.sleep(1.05)
    points = _system_rows(store_uri, run.run_id)
    assert set(points) == HOST_METRICS
    assert {len(series) for series in points.values()} == {1}


def test_a_run_without_it_starts_no_sampler(tmp_path: Path) -> None:
    with lakestore.start_run(store=str(tmp_path / "store")) as run:
        assert run._sampler is None
        assert _sampler_threads() == []


def test_the_environment_turns_it_on_for_an_unchanged_script(tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    script = "import lakestore, time\nwith lakestore.start_run() as run:\n    time.sleep(0.2)\n"
    script += "print(run.run_id)\n"
    environment = dict(
        os.environ,
        LAKESTORE_URI=store_uri,
        LAKESTORE_SYSTEM_METRICS="true",
        LAKESTORE_SYSTEM_METRICS_INTERVAL="0.05",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    points = _system_rows(store_uri, done.stdout.strip())
    assert set(points) == HOST_METRICS


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("LAKESTORE_SYSTEM_METRICS", "maybe"),
        ("LAKESTORE_SYSTEM_METRICS_INTERVAL", "ten"),
        ("LAKESTORE_SYSTEM_METRICS_INTERVAL", "0"),
        ("LAKESTORE_SYSTEM_METRICS_INTERVAL", "nan"),
    ],
)
def test_a_bad_environment_value_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, text: str
) -> None:
    monkeypatch.setenv("LAKESTORE_SYSTEM_METRICS", "1")
    monkeypatch.setenv(variable, text)
    with pytest.raises(InvalidValueError, match=f"{variable}.*{text}"):
        lakestore.start_run(store=str(tmp_path / "store"))
    assert (
        not (tmp_path / "store").exists()
        or lakestore.connect(str(tmp_path / "store")).sql("SELECT * FROM runs").fetchall() == []
    )


@pytest.mark.parametrize("interval", [0, -1, 0.01, float("inf"), "10", True, None])
def test_a_bad_interval_is_refused_naming_it(tmp_path: Path, interval: Any) -> None:
    if interval is None:  # the default: fine
        with lakestore.start_run(store=str(tmp_path / "s"), log_system_metrics=True) as run:
            assert run._sampler is not None
        return
    with pytest.raises(InvalidValueError, match=f"system_metrics_interval {interval!r}"):
        lakestore.start_run(
            store=str(tmp_path / "s"), log_system_metrics=True, system_metrics_interval=interval
        )


def test_a_counter_that_becomes_unreadable_is_dropped_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store_uri = str(tmp_path / "store")
    with _sampling(store_uri) as run:
        _samples(run, 2)

        def denied(path: str) -> Any:
            raise PermissionError(13, "Permission denied", path)

        with caplog.at_level(logging.WARNING, logger="lakestore"):
            monkeypatch.setattr(psutil, "disk_usage", denied)
            _samples(run, 5)
    warned = [r.getMessage() for r in caplog.records if "disk" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "PermissionError" in warned[0]
    assert run.run_id in warned[0]
    points = _system_rows(store_uri, run.run_id)
    assert len(points["system/cpu_utilization_percentage"]) >= 5
    assert 2 <= len(points["system/disk_usage_percentage"]) < 5


class _NVMLError(Exception):
    pass


def _stub_nvml(monkeypatch: pytest.MonkeyPatch, *, fail_at_start: bool = False) -> dict[str, Any]:
    """Install a stub ``pynvml`` with two GPUs; its state: set "broken" to make every
    reading raise (a driver that dies mid-run); "shut" tells whether it was shut down."""
    state: dict[str, Any] = {"broken": False, "shut": False}

    def reading(value: Any) -> Any:
        def read(handle: int) -> Any:
            if state["broken"]:
                raise _NVMLError("Unknown Error: the GPU has fallen off the bus")
            return value

        return read

    def init() -> None:
        if fail_at_start:
            raise _NVMLError("NVML Shared Library Not Found")

    stub = types.ModuleType("pynvml")
    stub.NVMLError = _NVMLError  # type: ignore[attr-defined]
    stub.nvmlInit = init  # type: ignore[attr-defined]
    stub.nvmlShutdown = lambda: state.update(shut=True)  # type: ignore[attr-defined]
    stub.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    stub.nvmlDeviceGetHandleByIndex = lambda index: index  # type: ignore[attr-defined]
    stub.nvmlDeviceGetUtilizationRates = reading(types.SimpleNamespace(gpu=42, memory=10))  # type: ignore[attr-defined]
    stub.nvmlDeviceGetMemoryInfo = reading(types.SimpleNamespace(used=1e9, total=4e9))  # type: ignore[attr-defined]
    stub.nvmlDeviceGetPowerUsage = reading(150_000)  # type: ignore[attr-defined]
    stub.nvmlDeviceGetEnforcedPowerLimit = reading(300_000)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    return state


def test_gpu_figures_stop_with_one_warning_when_the_driver_fails_mid_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = _stub_nvml(monkeypatch)
    store_uri = str(tmp_path / "store")
    with (
        caplog.at_level(logging.WARNING, logger="lakestore"),
        _sampling(store_uri) as run,
    ):
        _samples(run, 2)
        nvml["broken"] = True
        _samples(run, 5)
    assert nvml["shut"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "GPU" in warned[0]
    assert "fallen off the bus" in warned[0]
    points = _system_rows(store_uri, run.run_id)
    gpu_keys = {f"system/gpu_{i}_{name}" for i in (0, 1) for name in GPU_FIGURES}
    assert set(points) == HOST_METRICS | gpu_keys
    for key in gpu_keys:
        name = key.split("_", 2)[2]
        assert 2 <= len(points[key]) < 5
        assert {value for _, value in points[key]} == {GPU_FIGURES[name]}
    assert len(points["system/cpu_utilization_percentage"]) >= 5


def test_a_machine_whose_gpu_library_fails_at_start_logs_the_host_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _stub_nvml(monkeypatch, fail_at_start=True)
    store_uri = str(tmp_path / "store")
    with (
        caplog.at_level(logging.WARNING, logger="lakestore"),
        _sampling(store_uri) as run,
    ):
        _samples(run, 2)
    assert caplog.records == []  # a machine without GPUs is no reason to warn
    assert set(_system_rows(store_uri, run.run_id)) == HOST_METRICS


FORKING_SCRIPT = """
import os, sys, threading, time
import lakestore

def samples(run, count):
    while run._sampler.step < count:
        time.sleep(0.02)

parent = lakestore.start_run(experiment="e", run_name="parent", log_system_metrics=True,
                             system_metrics_interval=0.05)
samples(parent, 2)
child = os.fork()
if child == 0:  # exits normally: its exit hooks must leave the parent's run alone
    assert all(t.name != "lakestore-system-metrics" for t in threading.enumerate())
    with lakestore.start_run(experiment="e", run_name="child", log_system_metrics=True,
                             system_metrics_interval=0.05) as own:
        samples(own, 2)
    sys.exit(0)
_, status = os.waitpid(child, 0)
samples(parent, parent._sampler.step + 2)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_samples_its_own_run_and_leaves_its_parents_alone(tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    done = subprocess.run(
        [sys.executable, "-c", FORKING_SCRIPT], env=dict(os.environ, LAKESTORE_URI=store_uri),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr
    with lakestore.connect(store_uri) as store:
        writers = store.sql(
            "SELECT r.run_name, r.status, count(DISTINCT m.writer_id), count(DISTINCT m.step) "
            "FROM metrics m JOIN runs r USING (run_id) "
            "WHERE m.key = 'system/cpu_utilization_percentage' GROUP BY ALL ORDER BY 1"
        ).fetchall()
    assert [row[:3] for row in writers] == [("child", "FINISHED", 1), ("parent", "FINISHED", 1)]
    assert all(steps >= 2 for *_, steps in writers)


def test_each_rank_of_a_distributed_run_samples_its_own_host(tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    with lakestore.start_run(store=store_uri, experiment="e") as run:
        pass
    rank = textwrap.dedent(
        f"""
        import time, lakestore
        with lakestore.start_run({run.run_id!r}, store={store_uri!r}, log_system_metrics=True,
                                 system_metrics_interval=0.05) as run:
            while run._sampler.step < 2:
                time.sleep(0.02)
        """
    )
    ranks = [subprocess.Popen([sys.executable, "-c", rank]) for _ in range(2)]
    assert [process.wait(timeout=120) for process in ranks] == [0, 0]
    with lakestore.connect(store_uri) as store:
        hosts = store.sql(
            "SELECT m.writer_id, any_value(w.host), count(*) FROM metrics m "
            "JOIN (SELECT DISTINCT writer_id, host FROM runs_log) w USING (writer_id) "
            "WHERE m.key = 'system/cpu_utilization_percentage' GROUP BY ALL"
        ).fetchall()
    assert len(hosts) == 2
    assert all(host and points >= 2 for _, host, points in hosts)
