"""Read-only querying and the sandbox: statements that would write files or change
settings are refused, files outside the store cannot be read, reads still work; through
the library and the ``lakestore`` command as a real process, on a local folder and on S3."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import s3fs

import lakestore
from lakestore.errors import QueryError, ReadOnlyError

READS = [
    ("SELECT count(*) FROM metrics", [(5,)]),
    ("WITH m AS (SELECT * FROM metrics) SELECT max(step) FROM m", [(4,)]),
    ("FROM runs SELECT status", [("FINISHED",)]),
    ("VALUES (1, 'a')", [(1, "a")]),
    ("TABLE experiments", None),
    ("DESCRIBE params", None),
    ("SHOW TABLES", None),
    ("SUMMARIZE metrics", None),
    ("EXPLAIN SELECT * FROM metrics", None),
    ("EXPLAIN ANALYZE SELECT count(*) FROM metrics", None),
    ("PRAGMA version", None),
    ("PRAGMA table_info('runs')", None),
    ("PIVOT metric_summary ON key USING first(latest) GROUP BY run_id", None),
    ("SELECT * FROM (PIVOT metrics ON key USING first(value) GROUP BY step) LIMIT 1", None),
    ("SELECT 1; SELECT count(*) FROM tags", [(1,)]),
]

WRITES = [
    "COPY (SELECT * FROM metrics) TO '{outside}/copied.csv'",
    "COPY (SELECT * FROM metrics) TO '{root}/copied.parquet'",
    "COPY (PIVOT metrics ON key USING first(value)) TO '{outside}/pivot.csv'",
    "EXPORT DATABASE '{outside}/exported'",
    "ATTACH '{outside}/attached.duckdb' AS attached",
    "ATTACH ':memory:' AS attached",
    "INSTALL httpfs",
    "LOAD parquet",
    "CREATE TABLE copied AS SELECT * FROM metrics",
    "CREATE OR REPLACE VIEW metrics AS SELECT 1",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "SET VARIABLE metrics_files = []",
    "PRAGMA enable_profiling",
    "PRAGMA profiling_output = '{outside}/profile.json'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{outside}/explained.csv'",
    "EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 1) TO '{outside}/explained.csv'",
    "SELECT * FROM enable_logging(storage = 'file', storage_path = '{outside}/logs')",
    "SELECT * FROM query('SELECT 1')",
    "CALL enable_logging(storage = 'file', storage_path = '{outside}/logs')",
    "SELECT 1; COPY (SELECT 1) TO '{outside}/second.csv'",
]


@pytest.fixture
def logged(store_uri: str, tmp_path: Path) -> tuple[str, Path]:
    """A store with one run of five points, and a local folder outside it."""
    with lakestore.start_run(store=store_uri, experiment="e", tags={"t": "x"}) as run:
        run.log_param("lr", 0.1)
        for step in range(5):
            run.log_metric("loss", 1 / (step + 1), step=step)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a,b\n1,2\n")
    return store_uri, outside


def _all_files(uri: str, outside: Path) -> set[str]:
    if uri.startswith("s3://"):
        files = set(s3fs.S3FileSystem(use_listings_cache=False).find(uri))
    else:
        files = {str(path) for path in Path(uri).rglob("*")}
    return files | {str(path) for path in outside.rglob("*")}


@pytest.mark.parametrize("sandbox", [False, True], ids=["read_only", "sandbox"])
def test_reads_work_and_writes_are_refused(logged: tuple[str, Path], sandbox: bool) -> None:
    uri, outside = logged
    before = _all_files(uri, outside)
    with lakestore.connect(uri, read_only=True, sandbox=sandbox) as store:
        for query, expected in READS:
            rows = store.sql(query).fetchall()
            assert expected is None or rows == expected, query
        for statement in WRITES:
            query = statement.format(outside=outside, root=store.storage.url)
            with pytest.raises(ReadOnlyError, match="refused") as refused:
                store.sql(query)
            assert "lakestore query --output FILE" in str(refused.value)
        # Searches, comparisons and histories run their own SQL and still work.
        assert len(store.search_runs("metrics.loss < 1").fetchall()) == 1
        assert store.sql("SELECT value FROM tags").fetchall() == [("x",)]
    assert _all_files(uri, outside) == before


def test_read_only_reads_files_outside_the_store_and_a_sandbox_does_not(
    logged: tuple[str, Path],
) -> None:
    uri, outside = logged
    secret = f"SELECT * FROM read_csv('{outside}/secret.csv')"
    with lakestore.connect(uri, read_only=True) as store:
        assert store.sql(secret).fetchall() == [(1, 2)]
    with lakestore.connect(uri, sandbox=True) as store:
        root = store.storage.url
        for query in [
            secret,
            "SELECT * FROM read_text('/etc/hostname')",
            "SELECT * FROM glob('/etc/*')",
            f"SELECT * FROM read_csv('{root}/../{Path(outside).name}/secret.csv')",
            f"SELECT * FROM read_text('{root}/experiments/../../outside/secret.csv')",
            f"SELECT * FROM read_text('{root}-other/x')",
        ]:
            result = _outcome(store, query)
            if uri.startswith("s3://"):  # a key is a name, not a path: `..` finds no file
                assert result == [] or isinstance(result, str), query
            else:
                assert "Permission Error" in str(result), query
        with pytest.raises(QueryError, match="Permission Error") as refused:
            store.sql(secret)
        assert f"a sandbox reads only the store's files, under {root}/" in str(refused.value)
        inbox = f"{root}/experiments/*/inbox/*/*.parquet"
        assert store.sql(f"SELECT count(*) > 0 FROM glob('{inbox}')").fetchall() == [(True,)]
        # Nothing but the store: not DuckDB's spill folder either, where others' files lie.
        allowed = store.sql("SELECT current_setting('allowed_directories')").fetchall()
        assert allowed == [([root.rstrip("/") + "/"],)]


def _outcome(store: lakestore.Store, query: str) -> list[tuple[object, ...]] | str:
    """The rows of ``query``, or the message of the QueryError it raised."""
    try:
        return store.sql(query).fetchall()
    except QueryError as error:
        return str(error)


def test_a_sandbox_holds_even_against_statements_that_skip_the_check(
    logged: tuple[str, Path],
) -> None:
    """The refusals above come first from the statement check; DuckDB enforces the
    sandbox's settings by itself too."""
    import duckdb

    uri, outside = logged
    with lakestore.connect(uri, sandbox=True) as store:
        for setting in ("enable_external_access = true", "lock_configuration = false"):
            with pytest.raises(duckdb.Error, match="configuration has been locked"):
                store.connection.execute(f"SET {setting}")
        with pytest.raises(duckdb.PermissionException):
            store.connection.execute(f"COPY (SELECT 1) TO '{outside}/x.csv'")
        with pytest.raises(duckdb.Error):
            store.connection.execute("LOAD httpfs")
    assert not (outside / "x.csv").exists()


def test_a_bad_statement_is_a_query_error_not_a_refusal(logged: tuple[str, Path]) -> None:
    uri, _ = logged
    with lakestore.connect(uri, read_only=True) as store:
        with pytest.raises(QueryError, match="syntax error") as error:
            store.sql("SELEC 1")
        assert not isinstance(error.value, ReadOnlyError)


def test_a_store_opened_plainly_runs_any_statement(logged: tuple[str, Path]) -> None:
    uri, outside = logged
    with lakestore.connect(uri) as store:
        store.sql(f"COPY (SELECT count(*) AS n FROM metrics) TO '{outside}/n.csv'")
    assert (outside / "n.csv").read_text().split() == ["n", "5"]


def _lakestore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["lakestore", *args], capture_output=True, text=True, timeout=120, env=os.environ
    )


def test_the_query_command_only_reads(logged: tuple[str, Path]) -> None:
    uri, outside = logged
    before = _all_files(uri, outside)
    shown = _lakestore("query", "SELECT count(*) AS n FROM metrics", "-s", uri, "-f", "csv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ['"n"', "5"]
    for statement in [WRITES[0], WRITES[3], WRITES[4], WRITES[6], WRITES[10]]:
        refused = _lakestore("query", statement.format(outside=outside, root=uri), "-s", uri)
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: ")
        assert refused.stderr.count("\n") == 1
        assert "use `lakestore query --output FILE`, `lakestore export`" in refused.stderr
    written = _lakestore("query", "SELECT * FROM metrics", "-s", uri, "-o", f"{outside}/m.csv")
    assert written.returncode == 0, written.stderr
    assert len((outside / "m.csv").read_text().splitlines()) == 6
    assert _all_files(uri, outside) == before | {f"{outside}/m.csv"}


def test_the_query_command_in_a_sandbox_reads_only_the_store(logged: tuple[str, Path]) -> None:
    uri, outside = logged
    secret = f"SELECT * FROM read_csv('{outside}/secret.csv')"
    assert _lakestore("query", secret, "-s", uri, "-f", "csv").returncode == 0
    refused = _lakestore("query", "--sandbox", secret, "-s", uri)
    assert refused.returncode == 1
    assert "a sandbox reads only the store's files" in refused.stderr
    shown = _lakestore("query", "--sandbox", "SELECT count(*) FROM metrics", "-s", uri, "-f", "csv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[-1] == "5"
