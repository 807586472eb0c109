"""What is logged is what DuckDB, Polars and PyArrow read back, row for row, local and on S3."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakestore
from lakestore import spec
from tests.conftest import fresh_store_uri
from tests.readers import READERS, has_files

text = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
names = st.text(text, min_size=1, max_size=30).filter(
    lambda name: len(spec.escape_name(name).encode()) <= spec.MAX_PARTITION_BYTES
)
keys = st.text(text, min_size=1, max_size=30)
tag_keys = keys.filter(lambda key: not key.startswith(spec.RESERVED_TAG_PREFIX))  # refused
metric_values = st.floats(allow_nan=True, allow_infinity=True)
param_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=50),
)

EXAMPLES = {"local": 30, "s3": 10}


def _expected_metric_rows(experiment: str, run_id: str, points: list[tuple[str, float, int]]):
    return sorted(
        (
            (experiment, run_id, key, "NaN" if math.isnan(value) else value, step)
            for key, value, step in points
        ),
        key=repr,
    )


def _check_same_in_every_reader(uri: str, table: str) -> list[tuple[Any, ...]]:
    if not has_files(uri, table):
        return []
    results = {name: read(uri, table) for name, read in READERS.items()}
    assert results["polars"] == results["duckdb"]
    assert results["pyarrow"] == results["duckdb"]
    return results["duckdb"]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_logged_rows_read_back_identically(backend: str, request: pytest.FixtureRequest) -> None:
    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        experiment=names,
        run_name=st.text(max_size=40),
        points=st.lists(
            st.tuples(keys, metric_values, st.integers(-(2**63), 2**63 - 1)), max_size=20
        ),
        params=st.dictionaries(keys, param_values, max_size=5),
        tags=st.dictionaries(tag_keys, st.text(max_size=30), max_size=5),
    )
    def check(experiment, run_name, points, params, tags) -> None:
        uri = fresh_store_uri(backend, request)
        with lakestore.start_run(
            experiment=experiment, run_name=run_name, tags=tags, store=uri
        ) as run:
            run.log_params(params)
            for key, value, step in points:
                run.log_metric(key, value, step=step)

        metrics = _check_same_in_every_reader(uri, "metrics")
        assert [row[:5] for row in metrics] == _expected_metric_rows(experiment, run.run_id, points)

        logged_params = _check_same_in_every_reader(uri, "params")
        assert {row[2]: row[3] for row in logged_params} == {
            key: spec.param_text_and_float(key, value)[0] for key, value in params.items()
        }
        assert all(row[:2] == (experiment, run.run_id) for row in logged_params)

        logged_tags = _check_same_in_every_reader(uri, "tags")
        assert {row[2]: row[3] for row in logged_tags} == tags

        events = sorted(_check_same_in_every_reader(uri, "runs"), key=lambda row: row[2])
        assert [(row[0], row[1], row[3], row[4]) for row in events] == [
            (experiment, run.run_id, "RUNNING", run_name),
            (experiment, run.run_id, "FINISHED", run_name),
        ]

    check()
