"""The format's name rules: escaping experiment names, and what the escaped form and the
paths built from it guarantee."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lakestore import layout, spec
from lakestore.errors import InvalidNameError

any_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1)
WRITER = "0123456789abcdef" * 2


@given(any_text)
def test_escaping_round_trips_and_stays_one_safe_segment(value: str) -> None:
    escaped = spec.escape_name(value)
    assert spec.unescape_name(escaped) == value
    assert "/" not in escaped
    assert "\\" not in escaped
    assert "\x00" not in escaped
    assert "." not in escaped  # so never "." or ".."
    assert all(ch.isprintable() and not ch.isspace() for ch in escaped)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("mnist", "mnist"),
        ("a b", "a%20b"),
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("v1.2", "v1%2E2"),
        ("x=1", "x%3D1"),
        ("50%", "50%25"),
        ("日本", "日本"),
        ("é", "é"),
        ("null", "null"),
        ("NULL", "NULL"),
        ("__HIVE_DEFAULT_PARTITION__", "__HIVE_DEFAULT_PARTITION__"),
        ("tab\there", "tab%09here"),
        ("\u00a0", "%C2%A0"),
    ],
)
def test_escaped_forms(value: str, escaped: str) -> None:
    assert spec.escape_name(value) == escaped


@given(any_text, st.integers(min_value=0, max_value=10**9))
def test_an_inbox_path_parses_back_to_what_built_it(experiment: str, sequence: int) -> None:
    try:
        spec.check_experiment_name(experiment)
    except InvalidNameError:
        assume(False)
    path = layout.inbox_path(experiment, "metrics", "r-1_x", WRITER, sequence)
    entry = layout.parse(path)
    assert entry == layout.Entry(
        "inbox", layout.experiment_folder(experiment), "metrics", "r-1_x", WRITER, sequence
    )
    assert spec.unescape_name(entry.folder.split("/")[1]) == experiment


@pytest.mark.parametrize("name", ["../../etc", "/abs/path", "..", ".", "a/../../b", "C:\\x"])
def test_hostile_names_stay_inside_the_experiment_folder(name: str) -> None:
    folder = layout.experiment_folder(spec.check_experiment_name(name))
    assert folder.split("/") == ["experiments", spec.escape_name(name)]
    assert folder.split("/")[1] not in (".", "..", "")
    paths = [
        layout.inbox_path(name, "metrics", "r1", WRITER, 0),
        layout.part_path(folder, "metrics", 1),
        layout.snapshot_path(folder, 1),
    ]
    for path, kind, segments in zip(paths, ["inbox", "part", "snapshot"], [5, 5, 4], strict=True):
        assert path.startswith(f"{folder}/")
        assert len(path.split("/")) == segments
        entry = layout.parse(path)
        assert entry is not None
        assert (entry.kind, entry.folder) == (kind, folder)


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
