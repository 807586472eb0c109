"""Read a store with DuckDB and with Polars alone: no lakestore import (docs/FORMAT.md).

python examples/read_directly.py [STORE]     # default: ./lakestore-data

A table's rows are those of the parts that each experiment's newest snapshot names, and
those of the inbox files that no part holds yet: the files whose sequence number (``seq``)
is greater than the one through which the snapshot says their writer is merged. List the
inbox before the snapshots: a file a merge deletes meanwhile then makes the read fail
(read again) instead of going missing.
"""

import glob
import sys

import duckdb
import polars as pl

store = sys.argv[1] if len(sys.argv) > 1 else "lakestore-data"
SNAPSHOTS = f"{store}/experiments/*/snapshots/*.parquet"


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


# DuckDB: the inbox files, the newest snapshot of each experiment, then the table's parts
# and unmerged inbox files.
duckdb.execute(f"SET VARIABLE inbox = (SELECT list(file) FROM glob('{inbox('metrics')}'))")
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
sources = []
if duckdb.sql("SELECT len(getvariable('parts'))").fetchall()[0][0]:
    sources.append("SELECT * FROM read_parquet(getvariable('parts'))")
if duckdb.sql("SELECT len(getvariable('inbox'))").fetchall()[0][0]:
    sources.append(
        "SELECT inbox.* FROM read_parquet(getvariable('inbox')) AS inbox "
        "LEFT JOIN (SELECT writer_id, merged_through FROM snapshot WHERE kind = 'merged') "
        "USING (writer_id) WHERE merged_through IS NULL OR seq > merged_through"
    )
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
frames = []
merged = pl.DataFrame(schema={"writer_id": pl.String, "merged_through": pl.Int64})
if snapshots := newest_snapshots():
    snapshot = pl.read_parquet(snapshots)
    parts = snapshot.filter((pl.col("kind") == "part") & (pl.col("table") == "runs"))["path"]
    if len(parts):
        frames.append(pl.scan_parquet([f"{store}/{path}" for path in parts]))
    merged = snapshot.filter(pl.col("kind") == "merged").select("writer_id", "merged_through")
if run_files:
    frames.append(
        pl.scan_parquet(run_files)
        .join(merged.lazy(), on="writer_id", how="left")
        .filter(pl.col("merged_through").is_null() | (pl.col("seq") > pl.col("merged_through")))
        .drop("merged_through")
    )
events = pl.concat(frames)
print(
    events.sort("event_time")
    .group_by("experiment", "run")
    .agg(pl.col("status").last(), pl.col("run_name").drop_nulls().last())
    .sort("experiment", "run")
    .collect()
)
