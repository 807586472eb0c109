"""The format's name rules: escaping partition values, and what the escaped form guarantees."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakestore import format

any_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1)


@given(any_text)
def test_escaping_round_trips_and_stays_one_safe_segment(value: str) -> None:
    escaped = format.escape_partition_value(value)
    assert format.unescape_partition_value(escaped) == value
    assert "/" not in escaped
    assert "\\" not in escaped
    assert "\x00" not in escaped
    assert escaped.lower() != "null"
    assert all(ch.isprintable() and not ch.isspace() for ch in escaped)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("mnist", "mnist"),
        ("a b", "a%20b"),
        ("a/b", "a%2Fb"),
        ("..", ".."),
        ("x=1", "x%3D1"),
        ("50%", "50%25"),
        ("日本", "日本"),
        ("é", "é"),
        ("null", "%6Eull"),
        ("NULL", "%4EULL"),
        ("tab\there", "tab%09here"),
        ("\u00a0", "%C2%A0"),
    ],
)
def test_escaped_forms(value: str, escaped: str) -> None:
    assert format.escape_partition_value(value) == escaped


@pytest.mark.parametrize("name", ["../../etc", "/abs/path", "..", "a/../../b", "C:\\x"])
def test_hostile_names_stay_inside_the_partition_folder(name: str) -> None:
    directory = format.partition_dir("metrics", format.check_experiment_name(name), "r1")
    parts = directory.split("/")
    assert len(parts) == 3
    assert parts[0] == "metrics"
    assert parts[1].startswith("experiment=")
    assert parts[2] == "run=r1"


def test_import_and_first_log_call_load_no_query_engine(tmp_path) -> None:
    code = (
        "import sys, lakestore\n"
        f"run = lakestore.start_run(store={str(tmp_path)!r}, flush_interval=3600)\n"
        "run.log_metric('loss', 0.5)\n"
        "print(sorted(m for m in ('duckdb', 'polars', 'pandas') if m in sys.modules))\n"
        "run.end()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
