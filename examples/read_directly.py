"""Read a store with DuckDB and with Polars alone: no lakestore import (docs/FORMAT.md).

python examples/read_directly.py [STORE]     # default: ./lakestore-data

A table's rows are those of the parts that each experiment's newest snapshot names, and
those of the inbox files that no part holds yet: the files whose sequence number (in the
file's name, ``<run id>.<writer id>-<seq>.parquet``) is greater than the one through which
the snapshot says their writer is merged. List the inbox before the snapshots, and open no
other inbox file: a file a merge deletes meanwhile then makes the read fail (read again)
instead of going missing.
"""

import glob
import re
import sys

import duckdb
import polars as pl

store = sys.argv[1] if len(sys.argv) > 1 else "lakestore-data"
SNAPSHOTS = f"{store}/experiments/*/snapshots/*.parquet"
INBOX_NAME = r"\.([0-9a-f]{32})-([0-9]+)\.parquet$"  # a writer id and a sequence number


def inbox(table: str) -> str:
    return f"{store}/experiments/*/inbox/{table}/*.parquet"


def has_files(pattern: str) -> bool:  # DuckDB and Polars refuse a pattern matching nothing
    return bool(glob.glob(pattern))


def newest_snapshots() -> list[str]:
    """Each experiment's newest snapshot: the greatest name in its snapshots folder (read
    no other: older ones may be deleted at any moment)."""
    newest: dict[str, str] = {}
    for path in glob.glob(SNAPSHOTS):
        folder = path.rsplit("/", 1)[0]
        newest[folder] = max(newest.get(folder, ""), path)
    return list(newest.values())


def unmerged(inbox_files: list[str], merged: dict[str, int]) -> list[str]:
    """The inbox files whose rows no part holds, by name; ``merged`` maps each writer id
    to the sequence number its files are merged through."""
    files = []
    for path in inbox_files:
        name = re.search(INBOX_NAME, path)
        if name and int(name[2]) > merged.get(name[1], -1):
            files.append(path)
    return files


# DuckDB: the inbox files, the newest snapshot of each experiment, then the table's parts
# and unmerged inbox files.
duckdb.execute(
    f"CREATE TABLE inbox AS SELECT file, regexp_extract(file, '{INBOX_NAME}', "
    f"['writer_id', 'seq']) AS name FROM glob('{inbox('metrics')}') "
    f"WHERE regexp_matches(file, '{INBOX_NAME}')"
)
duckdb.execute(
    "CREATE TABLE snapshot (experiment VARCHAR, generation BIGINT, kind VARCHAR, "
    '"table" VARCHAR, path VARCHAR, writer_id VARCHAR, merged_through BIGINT)'
)
if has_files(SNAPSHOTS):
    duckdb.execute(
        "SET VARIABLE snapshots = (SELECT list(newest) FROM (SELECT max(file) AS newest "
        f"FROM glob('{SNAPSHOTS}') GROUP BY parse_dirpath(file)))"
    )
    duckdb.execute(
        'INSERT INTO snapshot SELECT experiment, generation, kind, "table", path, writer_id, '
        "merged_through FROM read_parquet(getvariable('snapshots'))"
    )
duckdb.execute(
    f"SET VARIABLE parts = (SELECT list('{store}/' || path) FROM snapshot "
    "WHERE kind = 'part' AND \"table\" = 'metrics')"
)
duckdb.execute(
    "SET VARIABLE unmerged = (SELECT list(file) FROM inbox LEFT JOIN snapshot "
    "ON kind = 'merged' AND writer_id = name.writer_id "
    "WHERE merged_through IS NULL OR name.seq::BIGINT > merged_through)"
)
sources = [
    f"SELECT * FROM read_parquet(getvariable('{files}'))"
    for files in ("parts", "unmerged")
    if duckdb.sql(f"SELECT len(getvariable('{files}'))").fetchall()[0][0]
]
print(
    duckdb.sql(
        f"""
        SELECT experiment, run, key, count(*) AS points, max(step) AS last_step
        FROM ({" UNION ALL ".join(sources)})
        GROUP BY ALL ORDER BY experiment, run, key
        """
    )
)

# Polars: the same, lazily; the latest status of each run from the append-only run events
# (enough for runs with one writer; FORMAT.md gives the rule for several).
run_files = glob.glob(inbox("runs"))
files = []
merged: dict[str, int] = {}
if snapshots := newest_snapshots():
    snapshot = pl.read_parquet(snapshots)
    parts = snapshot.filter((pl.col("kind") == "part") & (pl.col("table") == "runs"))["path"]
    files += [f"{store}/{path}" for path in parts]
    merged = dict(
        snapshot.filter(pl.col("kind") == "merged")
        .select("writer_id", "merged_through")
        .iter_rows()
    )
events = pl.scan_parquet(files + unmerged(run_files, merged))
print(
    events.sort("event_time")
    .group_by("experiment", "run")
    .agg(pl.col("status").last(), pl.col("run_name").drop_nulls().last())
    .sort("experiment", "run")
    .collect()
)
