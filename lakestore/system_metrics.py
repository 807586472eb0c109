"""System metrics: what the machine did during a run, logged as ordinary metrics.

A run started with ``log_system_metrics=True`` (or ``$LAKESTORE_SYSTEM_METRICS=1``) gets a
background thread that samples the host every ``interval`` seconds (10 by default) and
logs one row per metric and sample under MLflow's names, so that dashboards and filters
written for MLflow carry over: ``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, ``system/gpu_0_utilization_percentage``, ... The
step is the sample's number (0, 1, 2, ...), as in MLflow; the rows carry the
``writer_id`` of the process that sampled, so the ranks of a distributed job that all
sample one run stay apart (join ``runs_log`` on ``writer_id`` for each one's host).

Each source of figures (CPU and memory, disk, network, each GPU library) is read on its
own: one that fails (a counter this process may not read, a GPU driver that dies
mid-run) is reported once with a warning and left out from then on, and the others go
on. psutil is imported when sampling starts, NVIDIA's ``pynvml`` (the ``gpu`` extra) too,
and only if it is installed: a process without GPUs logs the host's figures.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lakestore.errors import InvalidValueError

if TYPE_CHECKING:
    from lakestore.tracking import Run

logger = logging.getLogger("lakestore")

DEFAULT_INTERVAL = 10.0
"""Seconds between two samples, as in MLflow (``$LAKESTORE_SYSTEM_METRICS_INTERVAL``)."""

MIN_INTERVAL = 0.05
"""The shortest interval taken: sampling more often would cost the training loop."""

PREFIX = "system/"

THREAD_NAME = "lakestore-system-metrics"

MEGABYTE = 1e6

Source = Callable[[], dict[str, float]]
"""Reads some figures of the machine now: metric name (without PREFIX) -> value."""


def enabled(requested: bool | None) -> bool:
    """Whether a run samples system metrics: as ``requested``, else as
    ``$LAKESTORE_SYSTEM_METRICS`` says (1/true/yes or 0/false/no), else not."""
    if requested is not None:
        return bool(requested)
    text = os.environ.get("LAKESTORE_SYSTEM_METRICS", "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InvalidValueError(
        f"$LAKESTORE_SYSTEM_METRICS is {text!r}; set it to 1 or 0 (or true or false)"
    )


def interval_of(requested: float | None) -> float:
    """Seconds between samples: ``requested``, else ``$LAKESTORE_SYSTEM_METRICS_INTERVAL``,
    else DEFAULT_INTERVAL; a value that is not a number of at least MIN_INTERVAL seconds is
    refused, naming it."""
    where = "system_metrics_interval"
    value: Any = requested
    if value is None:
        text = os.environ.get("LAKESTORE_SYSTEM_METRICS_INTERVAL")
        if text is None:
            return DEFAULT_INTERVAL
        where = "$LAKESTORE_SYSTEM_METRICS_INTERVAL"
        try:
            value = float(text)
        except ValueError:
            value = text
    if type(value) not in (int, float) or not math.isfinite(value) or value < MIN_INTERVAL:
        raise InvalidValueError(
            f"{where} {value!r} is not a number of seconds of at least {MIN_INTERVAL}"
        )
    return float(value)


class SystemMetricsSampler:
    """Samples the machine every ``interval`` seconds in a daemon thread and logs the
    figures to ``run``, until :meth:`stop`, which logs one last sample."""

    def __init__(self, run: Run, interval: float) -> None:
        self.run = run
        self.interval = interval
        self.step = 0
        self._sources: dict[str, Source] = {}
        self._closers: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one sample at a time: the thread's or stop()'s
        self._last = time.monotonic()
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Find the sources this machine has and start sampling."""
        self._sources = _host_sources()
        gpus = _nvidia_source()
        if gpus is not None:
            self._sources["NVIDIA GPUs"], closer = gpus
            self._closers.append(closer)
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._sample_until_stopped, name=THREAD_NAME)
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and log a last sample (of the time since the one before), so
        that a run shorter than the interval has one too. In a forked child, whose
        sampler thread did not survive the fork, do nothing."""
        if self._pid != os.getpid() or self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        if time.monotonic() - self._last >= min(1.0, self.interval):
            self._sample()
        for close in self._closers:
            _quietly(close)
        self._closers.clear()

    def _sample_until_stopped(self) -> None:
        while not self._stopping.wait(max(0.0, self._last + self.interval - time.monotonic())):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            figures: dict[str, float] = {}
            for name, read in list(self._sources.items()):
                try:
                    figures.update(read())
                except Exception as error:  # a counter gone unreadable, a driver dead
                    del self._sources[name]
                    logger.warning(
                        "lakestore stops logging the %s figures of run %s: %s: %s "
                        "(the other system metrics go on)",
                        name, self.run.run_id, type(error).__name__, error,
                    )  # fmt: skip
            self._last = time.monotonic()
            if not figures:
                return
            try:
                self.run.log_metrics({PREFIX + k: v for k, v in figures.items()}, self.step)
            except Exception as error:  # the run ended under us: nothing left to sample
                self._sources.clear()
                logger.warning(
                    "lakestore stops logging system metrics of run %s: %s",
                    self.run.run_id, error,
                )  # fmt: skip
                return
            self.step += 1


def _host_sources() -> dict[str, Source]:
    """The host's CPU and memory, disk and network figures, read with psutil."""
    import psutil

    psutil.cpu_percent()  # the next call measures from now
    root = os.path.abspath(os.sep)

    def processor_and_memory() -> dict[str, float]:
        memory = psutil.virtual_memory()
        return {
            "cpu_utilization_percentage": psutil.cpu_percent(),
            "system_memory_usage_megabytes": memory.used / MEGABYTE,
            "system_memory_usage_percentage": memory.percent,
        }

    def disk() -> dict[str, float]:
        usage = psutil.disk_usage(root)
        return {
            "disk_usage_percentage": usage.percent,
            "disk_usage_megabytes": usage.used / MEGABYTE,
            "disk_available_megabytes": usage.free / MEGABYTE,
        }

    sources: dict[str, Source] = {"CPU and memory": processor_and_memory, "disk": disk}
    try:
        start = psutil.net_io_counters()
    except Exception as error:
        logger.warning("lakestore logs no network metrics: %s: %s", type(error).__name__, error)
    else:

        def network() -> dict[str, float]:
            now = psutil.net_io_counters()
            return {  # since sampling started, as MLflow counts them
                "network_receive_megabytes": (now.bytes_recv - start.bytes_recv) / MEGABYTE,
                "network_transmit_megabytes": (now.bytes_sent - start.bytes_sent) / MEGABYTE,
            }

        sources["network"] = network
    return sources


def _nvidia_source() -> tuple[Source, Callable[[], None]] | None:
    """Each NVIDIA GPU's utilisation, memory and power, read with NVML, and the call that
    releases NVML; None without ``pynvml`` or a driver (a machine without GPUs)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handles = [
            pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())
        ]
    except Exception as error:
        logger.info("lakestore logs no GPU metrics: NVML did not start (%s)", error)
        return None
    if not handles:
        _quietly(pynvml.nvmlShutdown)
        return None

    def utilisation(handle: Any) -> dict[str, float]:
        return {"utilization_percentage": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu}

    def memory(handle: Any) -> dict[str, float]:
        used = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {
            "memory_usage_megabytes": used.used / MEGABYTE,
            "memory_usage_percentage": 100 * used.used / used.total,
        }

    def power(handle: Any) -> dict[str, float]:
        watts = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000  # NVML counts milliwatts
        limit = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
        return {"power_usage_watts": watts, "power_usage_percentage": 100 * watts / limit}

    readers = []
    for read in (utilisation, memory, power):  # a figure some GPUs lack is left out
        try:
            read(handles[0])
        except Exception as error:
            logger.info("lakestore logs no GPU %s figures: %s", read.__name__, error)
        else:
            readers.append(read)

    def gpus() -> dict[str, float]:
        return {
            f"gpu_{index}_{name}": value
            for index, handle in enumerate(handles)
            for read in readers
            for name, value in read(handle).items()
        }

    return gpus, pynvml.nvmlShutdown


def _quietly(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as error:
        logger.debug("lakestore: %s failed at the end of sampling: %s", call, error)
