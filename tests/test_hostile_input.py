"""Hostile and bad input: names that try to leave the store, values that are not numbers,
steps that go back, conflicting and huge params, 100,000 metric keys in one run.

Each case either raises a LakestoreError naming the bad value or behaves as the docs say,
and nothing else logged is lost: the other rows stay readable through lakestore.connect and
through DuckDB, Polars and PyArrow reading the files directly (tests/readers.py), and no
file appears outside the store root. Local folder and S3 (moto on 127.0.0.1) where cheap.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import fractions
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import lakestore
from lakestore import spec
from lakestore.errors import (
    InvalidNameError,
    InvalidValueError,
    ParamConflictError,
    QueryError,
    RunNotFoundError,
    StoreError,
)
from lakestore_cli.main import app
from tests.conftest import fresh_store_uri
from tests.readers import READERS

T0 = 1_700_000_000_000
"""A timestamp in milliseconds since the epoch, as MLflow users pass them."""


# -- helpers -------------------------------------------------------------------------------


def _files_under(folder: Path) -> set[Path]:
    return {Path(parent, name) for parent, _, names in os.walk(folder) for name in names}


def _s3_keys(uri: str) -> set[str]:
    import s3fs

    bucket = uri[len("s3://") :].split("/", 1)[0]
    return set(s3fs.S3FileSystem(use_listings_cache=False).find(bucket))


@contextlib.contextmanager
def _nothing_written_outside(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: Path | None = None
) -> Iterator[None]:
    """Fail if the block creates a file outside the store root (but ``allowed``).

    The block runs with the working directory in ``tmp_path``, so that a relative escape
    lands where the walk of ``tmp_path``'s parent (this session's temporary folders) sees it.
    """
    watched = tmp_path.parent
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    before = _files_under(watched)
    yield
    new = _files_under(watched) - before - {allowed}
    if uri.startswith("s3://"):
        assert not new, sorted(new)[:5]
        prefix = uri[len("s3://") :] + "/"
        outside = [key for key in _s3_keys(uri) if not key.startswith(prefix)]
        assert not outside, outside[:5]
    else:
        root = Path(uri).resolve()
        outside = [path for path in new if not path.resolve().is_relative_to(root)]
        assert not outside, sorted(outside)[:5]
    assert not Path("/abs").exists()


def _metric_rows(uri: str) -> list[tuple[Any, ...]]:
    """(experiment, key, value, step) of every metric row, the same in every direct reader."""
    results = {name: read(uri, "metrics") for name, read in READERS.items()}
    assert results["polars"] == results["duckdb"]
    assert results["pyarrow"] == results["duckdb"]
    return _sorted((row[0], row[2], row[3], row[4]) for row in results["duckdb"])


def _sorted(rows: Any) -> list[tuple[Any, ...]]:
    """Rows in a fixed order, NaN (the string "NaN") and numbers mixed."""
    return sorted(rows, key=repr)


def _sql(uri: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with lakestore.connect(uri) as store:
        return store.sql(query, params).fetchall()


def _witness(uri: str) -> str:
    """A run of another experiment, logged first: it must survive whatever follows."""
    with lakestore.start_run(
        store=uri, experiment="witness", run_name="witness", tags={"t": "v"}
    ) as run:
        run.log_param("p", "kept")
        run.log_metric("m", 1.0, step=0)
        run.log_metric("m", 2.0, step=1)
    return run.run_id


def _witness_intact(store: lakestore.Store, run_id: str) -> None:
    assert store.sql(
        "SELECT 'metric', key, value::VARCHAR, step FROM metrics WHERE run_id = $id "
        "UNION ALL SELECT 'param', key, value, NULL FROM params WHERE run_id = $id "
        "UNION ALL SELECT 'status', status, NULL, NULL FROM runs WHERE run_id = $id "
        "ORDER BY ALL",
        {"id": run_id},
    ).fetchall() == [
        ("metric", "m", "1.0", 0),
        ("metric", "m", "2.0", 1),
        ("param", "p", "kept", None),
        ("status", "FINISHED", None, None),
    ]


def _raises(error: type[Exception], message: str) -> Any:
    return pytest.raises(error, match=re.escape(message))


# -- names that try to leave the store -----------------------------------------------------

HOSTILE_NAMES = [
    "../",
    "..",
    ".",
    "/abs/path",
    "a/../../b",
    "../../../../../../tmp/escaped",
    "..\\..\\b",
    "C:\\x",
    "null",
    "NULL",
    "key=value",
    "experiment=x",
    "run=y/z",
    "%2F..%2F",
    "*",
    "[x]",
    "~",
    "a\nb",
    " lead and trail ",
    "日本語",
    "e\u0301",  # combining accent: a different name from "é"
    "é",
    "🙂",
    "\u200b",
    "x" * 240,
]
"""Experiment names, run names, keys and values that are stored as they are."""


S3_NAMES = ["../", "..", "/abs/path", "a/../../b", "..\\..\\b", "null", "key=value", "日本語"]
"""The names tried on S3, where every query lists and reads through HTTP: the path-shaped."""


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_hostile_names_stay_inside_the_store_and_read_back_exactly(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = fresh_store_uri(backend, request)
    names = HOSTILE_NAMES if backend == "local" else S3_NAMES
    with _nothing_written_outside(uri, tmp_path, monkeypatch):
        _witness(uri)
        for index, name in enumerate(names):
            key = name[: spec.MAX_KEY_LENGTH]
            with lakestore.start_run(
                store=uri, experiment=name, run_name=name, tags={key: name}
            ) as run:
                run.log_param(key, name)
                run.log_metric(key, float(index), step=index)
                run.log_metric(f"{key}/../../x", -1.0)

    with lakestore.connect(uri) as store:
        rows = store.sql(
            "SELECT 'runs', experiment, run_name, run_name FROM runs "
            "UNION ALL SELECT 'params', experiment, key, value FROM params "
            "UNION ALL SELECT 'tags', experiment, key, value FROM tags"
        ).fetchall()
        assert sorted(rows, key=repr) == sorted(
            [
                (table, name, name if table == "runs" else name[: spec.MAX_KEY_LENGTH], name)
                for name in names
                for table in ("runs", "params", "tags")
            ]
            + [("runs", "witness", "witness", "witness"), ("params", "witness", "p", "kept")]
            + [("tags", "witness", "t", "v")],
            key=repr,
        )
        if backend == "local":  # a search takes seconds on S3
            # A name is searched for as the value it is, never as a path.
            found = store.search_runs(experiments=["../"]).fetchall()
            assert [row[0] for row in found] == ["../"]
    expected = _sorted(
        [(name, name, float(index), index) for index, name in enumerate(names)]
        + [(name, f"{name}/../../x", -1.0, 0) for name in names]
        + [("witness", "m", 1.0, 0), ("witness", "m", 2.0, 1)]
    )
    assert _metric_rows(uri) == expected


def test_values_and_run_names_may_hold_any_character(tmp_path: Path) -> None:
    """Only names and keys are restricted: values keep NUL, control characters and the rest."""
    uri = str(tmp_path)
    values = ["a\x00b", "\r\n\t", "\x1b[31mred", "../../x", "\\", "null", "", "🙂" * 1000]
    for value in values:
        with lakestore.start_run(store=uri, run_name=value, tags={"t": value}) as run:
            run.log_param("p", value)
    with lakestore.connect(uri) as store:
        rows = store.sql(
            "SELECT run_name, params.value, tags.value FROM runs "
            "JOIN params USING (run_id) JOIN tags USING (run_id)"
        ).fetchall()
    assert sorted(rows) == sorted((value, value, value) for value in values)
    for read in READERS.values():
        assert sorted(row[3] for row in read(uri, "params")) == sorted(values)


LONG_PLAIN_KEYS = ["k" * spec.MAX_KEY_LENGTH, "日" * spec.MAX_KEY_LENGTH]


def test_the_longest_keys_are_stored_whole(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    with lakestore.start_run(store=uri, tags=dict.fromkeys(LONG_PLAIN_KEYS, "t")) as run:
        run.log_params(dict.fromkeys(LONG_PLAIN_KEYS, "p"))
        run.log_metrics(dict.fromkeys(LONG_PLAIN_KEYS, 1.0))
    for table in ("params", "tags"):
        assert sorted(_sql(uri, f"SELECT key FROM {table}")) == [(k,) for k in LONG_PLAIN_KEYS]
    assert sorted(row[1] for row in _metric_rows(uri)) == sorted(LONG_PLAIN_KEYS)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        *[
            (lambda uri, name=name: lakestore.start_run(name, store=uri), InvalidNameError,
             f"run id {name!r} is not valid")
            for name in ["..", ".", "/abs/path", "a/../../b", "a\x00b", "a\\b", "k=v",
                         "x" * 65, "日本", "", " ", "a b"]
        ],
        (lambda uri: lakestore.start_run(b"ab", store=uri), InvalidNameError, "run id b'ab'"),
        # Well-formed ids that name no run: nothing is created under them.
        (lambda uri: lakestore.start_run("null", store=uri), RunNotFoundError, "no run 'null'"),
        (lambda uri: lakestore.start_run("__HIVE_DEFAULT_PARTITION__", store=uri),
         RunNotFoundError, "no run '__HIVE_DEFAULT_PARTITION__'"),
        (lambda uri: lakestore.start_run(store=uri, parent_run_id="../x"), InvalidNameError,
         "run id '../x' is not valid"),
        (lambda uri: lakestore.start_run(store=uri, run_name=5), InvalidValueError,
         "run name must be a string, got 5"),
        (lambda uri: lakestore.start_run(store=uri, run_name="\udc80"), InvalidValueError,
         "run name '\\udc80' is not valid Unicode"),
        (lambda uri: lakestore.start_run(store=uri, experiment=b"x"), InvalidNameError,
         "experiment name must be a string, got b'x'"),
        (lambda uri: lakestore.start_run(store=uri, experiment="/" * 81), InvalidNameError,
         "takes 243 bytes as a directory name, the limit is 240"),
        (lambda uri: lakestore.set_experiment("../x\x00"), InvalidNameError,
         "experiment name '../x\\x00' contains a NUL character"),
        (lambda uri: lakestore.start_run(store=uri, tags={"../t\x00": "v"}), InvalidNameError,
         "tag key '../t\\x00' contains a NUL character"),
    ],
)  # fmt: skip
def test_unusable_run_ids_and_names_start_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call, error, message: str
) -> None:
    uri = str(tmp_path / "store")
    with _nothing_written_outside(uri, tmp_path, monkeypatch):
        witness = _witness(uri)
        with _raises(error, message):
            call(uri)
    assert lakestore.active_run() is None
    with lakestore.connect(uri) as store:
        assert store.sql("SELECT run_id FROM runs").fetchall() == [(witness,)]
        _witness_intact(store, witness)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda run: run.log_param("../p\x00", 1), "param key '../p\\x00' contains a NUL"),
        (lambda run: run.log_metric("/abs\x00", 1.0), "metric key '/abs\\x00' contains a NUL"),
        (lambda run: run.log_metrics({"ok": 1.0, "..\x00": 2.0}), "metric key '..\\x00'"),
        (lambda run: run.log_metric_series("a\x00b", [1.0]), "metric key 'a\\x00b'"),
        (lambda run: run.set_tags({"ok": "v", "x" * 251: "v"}), "tag key 'xxxx"),
        (lambda run: run.log_params({"ok": 1, "p" * 251: 1}), "is 251 characters long"),
        (lambda run: run.log_params({"ok": 1, 7: 1}), "param key must be a string, got 7"),
        (lambda run: run.log_param("\udc80", 1), "param key '\\udc80' is not valid Unicode"),
        (lambda run: run.delete_tag(""), "tag key must not be empty"),
        (lambda run: run.set_tag(None, "v"), "tag key must be a string, got None"),
    ],
)
def test_unusable_keys_are_refused_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call, message: str
) -> None:
    uri = str(tmp_path / "store")
    with _nothing_written_outside(uri, tmp_path, monkeypatch):
        witness = _witness(uri)
        with lakestore.start_run(store=uri, experiment="e") as run:
            run.log_metric("before", 1.0)
            run.log_param("before", 1)
            with _raises(InvalidNameError, message):
                call(run)
            run.log_metric("after", 2.0)
    with lakestore.connect(uri) as store:
        _witness_intact(store, witness)
        assert store.sql(
            "SELECT 'metric', key, value::VARCHAR FROM metrics WHERE experiment = 'e' "
            "UNION ALL SELECT 'param', key, value FROM params WHERE experiment = 'e' "
            "UNION ALL SELECT 'tag', key, value FROM tags WHERE experiment = 'e' ORDER BY ALL"
        ).fetchall() == [("metric", "after", "2.0"), ("metric", "before", "1.0"),
                         ("param", "before", "1")]  # fmt: skip


@pytest.fixture
def cli_store(store_uri: str) -> dict[str, str]:
    """A store with runs in experiments "../x" and "x", metric keys shaped like paths."""
    ids = {}
    for experiment in ("../x", "x"):
        with lakestore.start_run(store=store_uri, experiment=experiment) as run:
            run.log_metric("../k", 1.0)
            run.log_metric("k", 2.0)
        ids[experiment] = run.run_id
    return ids


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_cli_takes_hostile_names_as_values_never_as_paths(
    store_uri: str, cli_store: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = store_uri
    exported = tmp_path / "exported.csv"
    with _nothing_written_outside(uri, tmp_path, monkeypatch, allowed=exported):
        result = _cli("runs", "../x", "-s", uri, "-f", "json")
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["run_id"] for line in result.stdout.splitlines()] == [
            cli_store["../x"]
        ]
        # Each command lists the store again, which takes seconds on S3: names tried locally.
        names = ["../../etc", "/abs/path", "a/../../b", "a\x00b", "..", "*", "x" * 1000]
        for name in names if not uri.startswith("s3://") else []:
            result = _cli("runs", name, "-s", uri, "-f", "csv")
            assert result.exit_code == 1, name
            assert f"error: no experiment {name!r}" in result.stderr
            result = _cli("history", name, "-s", uri, "-f", "csv")
            assert result.exit_code == 1, name
            assert f"error: no run {name!r}" in result.stderr
            result = _cli("compare", name, "-s", uri)
            assert result.exit_code == 1
            assert f"error: no run {name!r}" in result.stderr
            result = _cli("compact", "--experiment", name, "--grace", "0", "-s", uri)
            assert (result.exit_code, result.stderr) == (0, "merged 0 inbox file(s)\n"), name
        result = _cli("history", cli_store["x"], "--metric", "../k", "-s", uri, "-f", "json")
        assert [json.loads(line)["value"] for line in result.stdout.splitlines()] == [1.0]
        result = _cli("export", "metrics", str(exported), "--experiment", "../x", "-s", uri)
        assert result.exit_code == 0, result.output
        with exported.open() as file:
            rows = [(row["experiment"], row["run_id"], row["key"]) for row in csv.DictReader(file)]
        assert sorted(rows) == [("../x", cli_store["../x"], key) for key in ("../k", "k")]
        result = _cli("export", "../metrics", str(exported), "-s", uri)
        assert result.exit_code == 1
        assert "cannot export '../metrics'" in result.stderr
        result = _cli("compact", "--experiment", "../x", "--grace", "0", "-s", uri)
        assert (result.exit_code, result.stderr) == (0, "merged 3 inbox file(s)\n")
    assert _metric_rows(uri) == _sorted([("../x", "../k", 1.0, 0), ("../x", "k", 2.0, 0),
                                         ("x", "../k", 1.0, 0), ("x", "k", 2.0, 0)])  # fmt: skip


def test_cli_as_a_real_process_keeps_to_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "store")
    with lakestore.start_run(store=uri, experiment="../../x") as run:
        run.log_metric("loss", 0.5)
    command = str(Path(sys.executable).with_name("lakestore"))
    with _nothing_written_outside(uri, tmp_path, monkeypatch):
        done = subprocess.run(
            [command, "runs", "../../x", "/abs/path", "-s", uri, "-f", "csv"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr.startswith("error: no experiment '/abs/path' in store")
        done = subprocess.run(
            [command, "runs", "../../x", "-s", uri, "-f", "csv"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert done.stdout.splitlines()[1].startswith(f'"../../x","{run.run_id}"')
        done = subprocess.run(
            [command, "compact", "-e", "../../x", "--grace", "0", "-s", uri],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert done.stderr == "merged 3 inbox file(s)\n"
    assert _metric_rows(uri) == [("../../x", "loss", 0.5, 0)]


# -- metric values that are not numbers ----------------------------------------------------

ACCEPTED_METRIC_VALUES = [
    # As in MLflow (numbers.Number), a bool is a number: True is 1.0.
    (True, 1.0),
    (False, 0.0),
    (np.bool_(True), 1.0),
    (decimal.Decimal("1.5"), 1.5),
    (decimal.Decimal("-Infinity"), -math.inf),
    (fractions.Fraction(1, 3), 1 / 3),
    (np.float16(0.5), 0.5),
    (np.float32(0.1), float(np.float32(0.1))),
    (np.float64(0.1), 0.1),
    (np.longdouble(0.1), 0.1),
    (np.int8(-3), -3.0),
    (np.uint64(2**64 - 1), 2.0**64),
    (2**63, 2.0**63),  # beyond int64 but a float64: rounded, as float() does
    (2**53 + 1, 2.0**53),
    (np.array(2.5), 2.5),  # a 0-d array is a scalar
    (np.array(1.5, dtype=object), 1.5),
]
"""Values log_metric and log_metrics take, and the float64 stored for each."""

REJECTED_METRIC_VALUES = [
    1 + 2j,
    complex(1, 0),  # a complex number, even with no imaginary part
    b"1",
    "nan",
    10**400,  # an integer beyond float64
    decimal.Decimal("1e400"),  # as 10**400: a finite number no float64 holds
    [1.0],
    (1.0,),
    np.array([2.5]),
    np.array([1.0, 2.0]),
    np.datetime64("2020-01-01"),
    np.timedelta64(5, "s"),
    np.str_("1.0"),
    dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    {"value": 1.0},
]


def _ids(values: list[Any]) -> list[str]:
    return [f"{type(value).__name__}-{index}" for index, value in enumerate(values)]


def test_numbers_of_every_kind_are_stored_as_float64(store_uri: str) -> None:
    with lakestore.start_run(store=store_uri) as run:
        for index, (value, _) in enumerate(ACCEPTED_METRIC_VALUES):
            run.log_metric(f"single{index}", value, step=index)
            run.log_metrics({f"batch{index}": value}, step=index)
    expected = _sorted(
        ("default", f"{kind}{index}", stored, index)
        for index, (_, stored) in enumerate(ACCEPTED_METRIC_VALUES)
        for kind in ("single", "batch")
    )
    assert _metric_rows(store_uri) == expected
    assert _sql(store_uri, "SELECT count(*) FROM metrics WHERE value IS NULL") == [(0,)]


@pytest.mark.parametrize("value", REJECTED_METRIC_VALUES, ids=_ids(REJECTED_METRIC_VALUES))
def test_values_that_are_not_real_numbers_are_refused(tmp_path: Path, value: Any) -> None:
    uri = str(tmp_path)
    message = f"value {value!r} is not a number"
    with lakestore.start_run(store=uri) as run:
        run.log_metric("loss", 1.0, step=0)
        with _raises(InvalidValueError, f"metric 'loss': {message}"):
            run.log_metric("loss", value, step=1)
        with _raises(InvalidValueError, f"metric 'bad': {message}"):
            run.log_metrics({"good": 2.0, "bad": value, "later": 3.0}, step=1)
        run.log_metric("loss", 4.0, step=2)
    assert _metric_rows(uri) == _sorted([("default", "loss", 1.0, 0), ("default", "loss", 4.0, 2)])


@pytest.mark.parametrize("value", [np.complex128(1 + 2j), np.complex64(1 + 2j)])
def test_numpy_complex_values_are_refused(tmp_path: Path, value: Any) -> None:
    with lakestore.start_run(store=str(tmp_path)) as run, warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        with _raises(InvalidValueError, "is not a number"):
            run.log_metric("loss", value)
        with _raises(InvalidValueError, "is not a number"):
            run.log_metrics({"acc": 1.0, "loss": value})


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (3.0, "step 3.0 is not an integer"),
        (np.float64(3.0), "step np.float64(3.0) is not an integer"),
        ("3", "step '3' is not an integer"),
        (None, "step None is not an integer"),
        (decimal.Decimal(3), "step Decimal('3') is not an integer"),
        (np.uint64(2**63), "step np.uint64(9223372036854775808) is not an integer"),
        (-(2**63) - 1, "step -9223372036854775809 is not an integer in the int64 range"),
        (True, "step True is not an integer"),  # a bool is an int to Python, not a step
    ],
)
def test_steps_that_are_not_int64_are_refused(tmp_path: Path, step: Any, message: str) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metric("loss", 1.0, step=np.int64(-(2**63)))
        with _raises(InvalidValueError, f"metric 'loss': {message}"):
            run.log_metric("loss", 9.0, step=step)
        with _raises(InvalidValueError, f"metric 'a': {message}"):
            run.log_metrics({"a": 9.0, "b": 9.0}, step=step)
        run.log_metric("loss", 2.0, step=1)
    assert _metric_rows(uri) == _sorted(
        [("default", "loss", 1.0, -(2**63)), ("default", "loss", 2.0, 1)]
    )


@pytest.mark.parametrize("timestamp", [1_700_000_000, 1.7e9, 10**9, 4_000_000_000])
def test_timestamps_in_seconds_are_refused(tmp_path: Path, timestamp: float) -> None:
    with lakestore.start_run(store=str(tmp_path)) as run:
        with _raises(InvalidValueError, f"timestamp {timestamp!r} would be in 197"):
            run.log_metric("loss", 1.0, timestamp=timestamp)
        with _raises(InvalidValueError, "looks like seconds since the epoch"):
            run.log_metrics({"loss": 1.0}, timestamp=timestamp)
        run.log_metric("loss", 2.0, timestamp=timestamp * 1000)
        run.log_metric("loss", 3.0, timestamp=0)  # the epoch itself, as a replay may log
    assert [row[2] for row in _metric_rows(str(tmp_path))] == [2.0, 3.0]


def test_a_store_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with _raises(StoreError, "cannot write to store"):
        lakestore.start_run(store=str(tmp_path / "a-file" / "store"))


@pytest.mark.parametrize("max_results", ["5", 2.5, True, -1])
def test_search_refuses_a_max_results_that_is_no_count(tmp_path: Path, max_results: Any) -> None:
    with lakestore.start_run(store=str(tmp_path)):
        pass
    message = f"max_results must be a whole number >= 0 (or None: every run), got {max_results!r}"
    with lakestore.connect(str(tmp_path)) as store, _raises(QueryError, message):
        store.search_runs(max_results=max_results)


def test_a_number_beyond_int64_in_a_filter_compares_as_a_double(tmp_path: Path) -> None:
    with lakestore.start_run(store=str(tmp_path)) as run:
        run.log_metric("big", 1e40)
    with lakestore.connect(str(tmp_path)) as store:
        assert len(store.search_runs("metrics.big > 1234567890123456789012345678901234567890")) == 1
        assert len(store.search_runs("metrics.big > 9999999999999999999999999999999999999999")) == 0


def _series_accepted() -> list[tuple[Any, list[Any]]]:
    """Series of numbers (made anew: a generator is used up once logged) and their floats."""
    return [
        (np.array([0.5, 2.0], dtype=object), [0.5, 2.0]),
        ([decimal.Decimal("0.1"), decimal.Decimal("1e-30")], [0.1, 1e-30]),
        (np.array([0.5, -1], dtype=np.float16), [0.5, -1.0]),
        (np.array([-128, 127], dtype=np.int8), [-128.0, 127.0]),
        (np.array([0, 2**53], dtype=np.int64), [0.0, 2.0**53]),
        ((float(i) for i in range(2)), [0.0, 1.0]),
        (range(2), [0.0, 1.0]),
        (pa.chunked_array([[1.0], [math.nan]]), [1.0, "NaN"]),
        (np.array([math.inf, math.nan], dtype=object), [math.inf, "NaN"]),
    ]


def test_series_of_numbers_of_every_kind_are_stored_as_float64(store_uri: str) -> None:
    with lakestore.start_run(store=store_uri) as run:
        for index, (values, _) in enumerate(_series_accepted()):
            run.log_metric_series(f"s{index}", values)
        run.log_metric_series("steps", [1.0, 2.0], steps=np.array([-5.0, 7.0]))  # whole floats
    expected = _sorted(
        [
            ("default", f"s{index}", value, step)
            for index, (_, stored) in enumerate(_series_accepted())
            for step, value in enumerate(stored)
        ]
        + [("default", "steps", 1.0, -5), ("default", "steps", 2.0, 7)]
    )
    assert _metric_rows(store_uri) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda run: run.log_metric_series("s", [True, False]), "values must be numbers, got bool"),
        (lambda run: run.log_metric_series("s", np.array([1.0, "a"], dtype=object)),
         "values cannot be read as double: Could not convert 'a'"),
        (lambda run: run.log_metric_series("s", np.array([1.0, None], dtype=object)),
         "values contain nulls; use NaN instead"),
        (lambda run: run.log_metric_series("s", np.ma.masked_array([1.0, 2.0], mask=[0, 1])),
         "values contain nulls"),
        (lambda run: run.log_metric_series("s", np.array([1 + 2j])), "values cannot be read"),
        (lambda run: run.log_metric_series("s", [1 + 2j]), "values cannot be read"),
        (lambda run: run.log_metric_series("s", [[1.0, 2.0]]), "must be numbers, got list<"),
        (lambda run: run.log_metric_series("s", np.ones((2, 2))), "only handle 1-dimensional"),
        (lambda run: run.log_metric_series("s", ["1.0"]), "values must be numbers, got string"),
        (lambda run: run.log_metric_series("s", "abc"), "values must be numbers, got string"),
        (lambda run: run.log_metric_series("s", 1.0), "'float' object is not iterable"),
        (lambda run: run.log_metric_series("s", [dt.datetime(2020, 1, 1)]),
         "values must be numbers, got timestamp"),
        # Unlike log_metric, a series refuses integers that float64 cannot hold exactly.
        (lambda run: run.log_metric_series("s", [2**53 + 1]),
         "Integer value 9007199254740993 not in range"),
        (lambda run: run.log_metric_series("s", [1.0, 2.0], steps=[0, 1, 2]),
         "2 values but 3 steps"),
        (lambda run: run.log_metric_series("s", [1.0, 2.0], steps=[0.5, 1.0]),
         "steps cannot be read as int64: Float value 0.500000 was truncated"),
        (lambda run: run.log_metric_series("s", [1.0, 2.0], steps=[True, False]),
         "steps must be numbers, got bool"),
        (lambda run: run.log_metric_series("s", [1.0, 2.0], steps=["0", "1"]),
         "steps must be numbers, got string"),
        (lambda run: run.log_metric_series("s", [1.0], steps=np.array([2**63], dtype=np.uint64)),
         "Integer value 9223372036854775808 not in range"),
        (lambda run: run.log_metric_series("s", [1.0, 2.0], timestamps=[T0]),
         "2 values but 1 timestamps"),
        (lambda run: run.log_metric_series("s", [1.0], timestamps=["now"]),
         "timestamps must be datetimes or milliseconds, got string"),
    ],
)  # fmt: skip
def test_series_that_are_not_numbers_are_refused(tmp_path: Path, call, message: str) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metric_series("s", [1.0, 2.0])
        with pytest.raises(InvalidValueError, match=re.escape(message)) as raised:
            call(run)
        assert str(raised.value).startswith("metric 's'")
        run.log_metric_series("s", [3.0], steps=[2])
    assert _metric_rows(uri) == _sorted(("default", "s", float(i + 1), i) for i in range(3))


@pytest.mark.parametrize(
    "call",
    [
        lambda run: run.log_metric_series("s", [2**64]),
        lambda run: run.log_metric_series("s", [1.0], steps=[2**64]),
        lambda run: run.log_metric_series("s", [1.0], timestamps=[2**64]),
    ],
)
def test_series_with_integers_beyond_64_bits_are_refused(tmp_path: Path, call) -> None:
    with lakestore.start_run(store=str(tmp_path)) as run:
        with _raises(InvalidValueError, "metric 's'"):
            call(run)
        run.log_metric("after", 1.0)


# -- steps that go back or repeat ----------------------------------------------------------

# (step, value, timestamp in ms after T0), in the order they are logged.
BACKWARD_STEPS = [(5, 0.5, 0), (3, 0.3, 1), (3, 0.31, 2), (1, 0.1, 3), (5, 0.55, 4), (0, 0.0, 5)]


def test_steps_that_go_back_or_repeat_are_all_kept_in_logging_order(tmp_path: Path) -> None:
    store_uri = str(tmp_path)
    with lakestore.start_run(store=store_uri) as run:
        for step, value, ms in BACKWARD_STEPS:
            run.log_metric("loss", value, step=step, timestamp=T0 + ms)
            run.log_metrics({"acc": value}, step=step, timestamp=T0 + ms)
        run.log_metric_series(
            "series",
            [value for _, value, _ in BACKWARD_STEPS],
            steps=[step for step, _, _ in BACKWARD_STEPS],
            timestamps=[T0 + ms for _, _, ms in BACKWARD_STEPS],
        )
        # The latest is not the last logged: step 5 logged again with an older timestamp.
        run.log_metric("clock", 1.0, step=5, timestamp=T0 + 10)
        run.log_metric("clock", 2.0, step=5, timestamp=T0 + 9)
    _check_backward_steps(store_uri, run.run_id)
    lakestore.compact(store_uri, grace=0)  # parts are sorted by step: the answers stay
    assert not _sql(store_uri, "SELECT 1 FROM metrics_log WHERE run IS NULL")
    _check_backward_steps(store_uri, run.run_id)


def _check_backward_steps(uri: str, run_id: str) -> None:
    logged = [(step, value) for step, value, _ in BACKWARD_STEPS]
    by_step = sorted(logged, key=lambda point: (point[0], logged.index(point)))
    with lakestore.connect(uri) as store:
        for key in ("loss", "acc", "series"):
            in_logging_order = store.sql(
                "SELECT step, value FROM metrics WHERE key = ? ORDER BY timestamp", [key]
            ).fetchall()
            assert in_logging_order == logged, key
            history = store.metric_history(run_id, key).fetchall()
            assert [(row[4], row[3]) for row in history] == by_step, key
        summary = store.sql(
            "SELECT key, latest, last_step, min, max, count FROM metric_summary ORDER BY key"
        ).fetchall()
        assert summary == [
            ("acc", 0.55, 5, 0.0, 0.55, 6),
            ("clock", 1.0, 5, 1.0, 2.0, 2),
            ("loss", 0.55, 5, 0.0, 0.55, 6),
            ("series", 0.55, 5, 0.0, 0.55, 6),
        ]
        searched = store.search_runs("metrics.loss = 0.55 and metrics.clock = 1").fetchall()
        assert [row[1] for row in searched] == [run_id]
    points = [(row[1], row[3], row[2]) for row in _metric_rows(uri) if row[1] != "clock"]
    assert sorted(points) == sorted((key, step, value) for key in ("acc", "loss", "series")
                                    for step, value in logged)  # fmt: skip


def test_repeated_steps_at_one_timestamp_keep_every_point(tmp_path: Path) -> None:
    """A series shares one timestamp (now) between its points; a tie at the greatest step
    goes to the greatest value (docs/QUERYING.md, as in MLflow)."""
    store_uri = str(tmp_path)
    with lakestore.start_run(store=store_uri) as run:
        run.log_metric_series("s", [0.9, 0.1, 0.2, 0.7], steps=[2, 1, 2, 2])
        for value in (0.3, 0.8, 0.4):
            run.log_metric("t", value, step=7, timestamp=T0)
    with lakestore.connect(store_uri) as store:
        assert store.sql(
            "SELECT key, latest, last_step, count FROM metric_summary ORDER BY key"
        ).fetchall() == [("s", 0.9, 2, 4), ("t", 0.8, 7, 3)]
        history = store.metric_history(run.run_id, "s").fetchall()
        assert sorted((row[4], row[3]) for row in history) == [(1, 0.1), (2, 0.2), (2, 0.7),
                                                                (2, 0.9)]  # fmt: skip


def test_default_timestamps_follow_the_logging_order(tmp_path: Path) -> None:
    uri = str(tmp_path)
    steps = [9, 3, 3, 0, 9, 1] * 500
    with lakestore.start_run(store=uri) as run:
        for index, step in enumerate(steps):
            run.log_metric("loss", float(index), step=step)
    rows = _sql(uri, "SELECT value, step, timestamp FROM metrics ORDER BY value")
    assert [(value, step) for value, step, _ in rows] == [
        (float(index), step) for index, step in enumerate(steps)
    ]
    times = [row[2] for row in rows]
    assert times == sorted(times)  # never backwards; equal within one microsecond
    assert _sql(uri, "SELECT last_step, count FROM metric_summary") == [(9, len(steps))]


# -- params logged again -------------------------------------------------------------------


def test_a_param_keeps_its_first_value_within_and_across_resumes(store_uri: str) -> None:
    with lakestore.start_run(store=store_uri) as run:
        run.log_params({"lr": 0.1, "layers": 3, "flag": True})
        # The same text is the same value, whatever the type it came as.
        run.log_params({"lr": "0.1", "layers": np.int64(3), "flag": "True"})
        run.log_param("lr", np.float64(0.1))
        with _raises(ParamConflictError, "param 'layers' was logged as '3'; it cannot change "
                     "to '3.0'"):  # fmt: skip
            run.log_param("layers", 3.0)
        run.log_metric("after", 1.0)
    with lakestore.start_run(run.run_id, store=store_uri) as resumed:
        resumed.log_params({"lr": 0.1, "layers": 3})  # fine, and not written again
        with _raises(ParamConflictError, "param 'lr' was logged as '0.1'; it cannot change "
                     "to '0.2'"):  # fmt: skip
            resumed.log_params({"new": "x", "lr": 0.2})
        resumed.log_param("new", "y")  # the refused batch logged nothing
    params = [("flag", "True"), ("layers", "3"), ("lr", "0.1"), ("new", "y")]
    with lakestore.connect(store_uri) as store:
        assert store.sql(
            "SELECT key, value FROM params UNION ALL SELECT 'rows', count(*)::VARCHAR "
            "FROM params_log UNION ALL SELECT 'status', status FROM runs ORDER BY ALL"
        ).fetchall() == sorted([*params, ("rows", "4"), ("status", "FINISHED")])
    rows = {name: read(store_uri, "params") for name, read in READERS.items()}
    assert rows["polars"] == rows["duckdb"] == rows["pyarrow"]
    assert sorted(row[2:4] for row in rows["duckdb"]) == params


# -- huge values ---------------------------------------------------------------------------


def _text(length: int) -> str:
    """Incompressible text of ``length`` ASCII characters."""
    return os.urandom(length // 2 + 1).hex()[:length]


@pytest.mark.parametrize(
    ("backend", "length"),
    [("local", 1024 * 1024), ("local", spec.MAX_VALUE_LENGTH), ("s3", spec.MAX_VALUE_LENGTH)],
    ids=["local-1MiB", "local-limit", "s3-limit"],
)
def test_huge_values_round_trip_exactly(
    backend: str, length: int, request: pytest.FixtureRequest
) -> None:
    store_uri = fresh_store_uri(backend, request)
    value = _text(length)
    with lakestore.start_run(store=store_uri, run_name=value, tags={"big": value}) as run:
        run.log_param("big", value)
        run.log_param("small", 1)
    with lakestore.connect(store_uri) as store:
        for query in (
            "SELECT value FROM params WHERE key = 'big'",
            "SELECT value FROM tags WHERE key = 'big'",
            "SELECT run_name FROM runs",
        ):
            assert store.sql(query).fetchall() == [(value,)], query
        found = store.search_runs("params.big LIKE '%'").to_arrow_table()
        assert found["params.big"].to_pylist() == [value]
        assert found["tags.big"].to_pylist() == [value]
        assert store.compare([run.run_id]).params.fetchall() == [("big", value), ("small", "1")]
    for read in READERS.values():
        assert sorted(row[2:4] for row in read(store_uri, "params")) == [
            ("big", value),
            ("small", "1"),
        ]
        assert [row[4] for row in read(store_uri, "runs")] == [value, value]


def test_values_over_the_limit_are_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    uri = str(tmp_path)
    over = "é" * (spec.MAX_VALUE_LENGTH + 1)  # the limit counts characters, not bytes
    at_limit = "é" * spec.MAX_VALUE_LENGTH
    message = f"is {len(over)} characters long; the limit is {spec.MAX_VALUE_LENGTH}"
    with _raises(InvalidValueError, f"run name {message}"):
        lakestore.start_run(store=uri, run_name=over)
    with lakestore.start_run(store=uri) as run:
        with _raises(InvalidValueError, f"param 'big' value {message}"):
            run.log_params({"ok": 1, "big": over})
        with _raises(InvalidValueError, f"tag 'big' value {message}"):
            run.set_tags({"ok": 1, "big": over})
        run.log_param("big", at_limit)
        run.log_metric("after", 1.0)
    assert _sql(uri, "SELECT key, length(value) FROM params") == [("big", len(at_limit))]
    assert _sql(uri, "SELECT count(*) FROM tags") == [(0,)]
    assert _sql(uri, "SELECT run_id, status FROM runs") == [(run.run_id, "FINISHED")]
    assert _metric_rows(uri) == [("default", "after", 1.0, 0)]


# -- 100,000 metric keys in one run --------------------------------------------------------

MANY_KEYS = 100_000


def _timed(seconds: dict[str, float], label: str, action: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = action()
    seconds[label] = round(time.perf_counter() - start, 3)
    return result


@pytest.mark.parametrize(("steps", "batch"), [(1, False), (3, True)], ids=["one", "three-steps"])
def test_100000_metric_keys_in_one_run(
    tmp_path: Path, record_property: Callable[[str, object], None], steps: int, batch: bool
) -> None:
    uri = str(tmp_path)
    witness = _witness(uri)
    keys = [f"metric/{index:06d}" for index in range(MANY_KEYS)]
    seconds: dict[str, float] = {}

    def log() -> lakestore.Run:
        with lakestore.start_run(store=uri, experiment="wide") as run:
            for step in range(steps):
                if batch:
                    run.log_metrics(dict.fromkeys(keys, float(step)), step=step)
                else:
                    for index, key in enumerate(keys):
                        run.log_metric(key, float(index), step=step)
        return run

    run = _timed(seconds, "log and end", log)
    store = lakestore.connect(uri)
    try:
        assert _timed(
            seconds,
            "count",
            lambda: store.sql(
                "SELECT count(*), count(DISTINCT key) FROM metrics WHERE run_id = ?", [run.run_id]
            ).fetchall(),
        ) == [(MANY_KEYS * steps, MANY_KEYS)]
        summary = _timed(
            seconds,
            "metric_summary",
            lambda: store.sql(
                "SELECT key, latest, last_step, count FROM metric_summary WHERE run_id = ? "
                "ORDER BY key",
                [run.run_id],
            ).fetchall(),
        )
        last = steps - 1
        assert summary == [
            (key, float(last if batch else index), last, steps) for index, key in enumerate(keys)
        ]
        compared = _timed(
            seconds, "compare", lambda: store.compare([run.run_id, witness]).metrics.fetchall()
        )
        assert len(compared) == MANY_KEYS + 1
        assert compared[0] == ("m", None, 2.0)
        assert compared[-1] == (keys[-1], float(last if batch else MANY_KEYS - 1), None)
        history = _timed(
            seconds,
            "metric_history of one key",
            lambda: store.metric_history(run.run_id, keys[12345]).fetchall(),
        )
        assert [(row[4], row[3]) for row in history] == [
            (step, float(step if batch else 12345)) for step in range(steps)
        ]
        found = _timed(
            seconds,
            "search_runs of another experiment",
            lambda: store.search_runs("metrics.m = 2", experiments=["witness"]).fetchall(),
        )
        assert [row[1] for row in found] == [witness]
        _witness_intact(store, witness)
    finally:
        store.close()
    for label, value in seconds.items():
        record_property(label, value)
    assert seconds["log and end"] < 30, seconds
    assert max(seconds.values()) < 30, seconds


def test_search_runs_on_a_run_with_100000_metric_keys_says_what_to_do(tmp_path: Path) -> None:
    """search_runs makes a column per key: past DuckDB's width limit it says so, and SQL over
    metric_summary answers the same question."""
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metrics({f"metric/{index:06d}": 1.0 for index in range(MANY_KEYS)})
    with lakestore.connect(uri) as store:
        with pytest.raises(QueryError, match=r"too many keys.*metric_summary"):
            store.search_runs("metrics.`metric/000007` = 1").fetchall()
        found = store.sql(
            "SELECT run_id FROM metric_summary WHERE key = 'metric/000007' AND latest = 1"
        ).fetchall()
    assert found == [(run.run_id,)]


def test_a_small_flush_after_many_keys_writes_a_small_file(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, flush_interval=3600) as run:
        run.log_metrics({f"{index:06d}-{os.urandom(16).hex()}": 1.0 for index in range(MANY_KEYS)})
        run.flush()
        files = set(tmp_path.glob("experiments/*/inbox/metrics/*.parquet"))
        run.log_metric("loss", 1.0, step=1)
        run.flush()
    (small,) = set(tmp_path.glob("experiments/*/inbox/metrics/*.parquet")) - files
    assert small.stat().st_size < 100_000


# -- keys that differ only in case ---------------------------------------------------------


def test_keys_that_differ_only_in_case_stay_apart(tmp_path: Path) -> None:
    """Keys are case-sensitive, as in MLflow: filters, summaries and compare keep them apart."""
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        run.log_metrics({"Loss": 0.0, "loss": 1.0, "LOSS": 2.0})
        run.log_params({"Lr": "a", "lr": "b"})
    with lakestore.connect(uri) as store:
        for filter_string in ("metrics.Loss = 0", "metrics.loss = 1", "params.lr = 'b'"):
            assert len(store.search_runs(filter_string).fetchall()) == 1, filter_string
        assert not store.search_runs("metrics.loss = 0").fetchall()
        assert store.compare([run.run_id]).metrics.fetchall() == [
            ("LOSS", 2.0),
            ("Loss", 0.0),
            ("loss", 1.0),
        ]
        wide = store.search_runs().to_arrow_table()
    # Every value is in the search result, whatever its columns are named (see below).
    values = [wide[name][0].as_py() for name in wide.column_names if name.startswith("metrics.")]
    assert sorted(values) == [0.0, 1.0, 2.0]
