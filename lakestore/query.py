"""The query layer: a DuckDB connection with views over a store's Parquet files.

Every view reads the files at query time, so data flushed after :func:`connect` is seen by
the next query. The README lists the views; docs/FORMAT.md gives the rules they apply.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from lakestore import files, layout, safety, search, spec
from lakestore.errors import InvalidValueError, QueryError, StoreError
from lakestore.storage import Storage

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from lakestore.reading import RunRecord

_BIND_ATTEMPTS = 10

_WIDTH_LIMITS = ("Pivot column limit", "Too many columns")
"""Words of DuckDB's errors for a result with more columns than it can hold."""
_QUOTED = re.compile(r"""["']([^"']+)["']""")

T = TypeVar("T")

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "int64": "BIGINT",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}

_SOURCES: dict[str, str] = {
    **{f"{table}_files": table for table in spec.TABLES},
    "metric_summaries": spec.SUMMARIES,
    "metrics_unsummarised": "metrics",
}
"""Each list of files a view reads, and the table they are files of: each table's live
files, the metric summaries, and the metrics files no summary covers (inbox files not
merged yet, and parts whose summary cannot be read)."""


class _Listing(NamedTuple):
    """The files one listing found live: root-relative paths for each source, the run of
    each inbox file (its name says so; a part holds many runs), and the files lakestore
    fetches whole instead of letting DuckDB read them (those of remote stores up to
    FETCH_WHOLE_BYTES)."""

    sources: dict[str, list[str]]
    runs_of: dict[str, str]
    fetched: frozenset[str]


EXPORTABLE_VIEWS = ("runs", "params", "metrics", "metric_summary", "tags", "experiments")
"""The views :meth:`Store.export_view` writes out."""

FETCH_WHOLE_BYTES = 32 * 1024 * 1024
"""Files of remote stores up to this size are fetched whole, all at once, and kept in
memory (lakestore.files): one GET each, where DuckDB's reads through fsspec cost several
requests a file. Larger files are read by DuckDB, which fetches only the row groups and
columns a query needs."""


NARROW_LISTINGS = 8
"""A query about a few runs lists their files alone when that takes at most this many
listings (experiments x (tables x runs + part tables + 1)), instead of the whole store."""


class _VanishedError(Exception):
    """A file of the listing is gone: a merge replaced it, and a new listing is due."""


# Views over the raw tables, resolving the append-only records to the current state.
_VIEWS = {
    "metrics": """
        SELECT experiment, run AS run_id, key, value, step, timestamp, writer_id FROM metrics_log
    """,
    "params": """
        SELECT experiment, run AS run_id, key, value, value_float, timestamp, writer_id
        FROM params_log
        QUALIFY row_number() OVER (PARTITION BY experiment, run, key ORDER BY timestamp) = 1
    """,
    "tag_states": """
        SELECT * FROM (
            SELECT experiment, run AS run_id, key, value, timestamp, writer_id FROM tags_log
            QUALIFY row_number() OVER (
                PARTITION BY experiment, run, key ORDER BY timestamp DESC) = 1
        ) WHERE value IS NOT NULL
    """,
    "tags": f"""
        SELECT * FROM tag_states
        WHERE run_id <> '{spec.EXPERIMENT_RUN}'
          AND NOT starts_with(key, '{spec.RESERVED_TAG_PREFIX}')
    """,
    "experiment_tags": f"""
        SELECT experiment, key, value, timestamp FROM tag_states
        WHERE run_id = '{spec.EXPERIMENT_RUN}'
          AND NOT starts_with(key, '{spec.RESERVED_TAG_PREFIX}')
    """,
    "metric_summary": """
        SELECT experiment, run AS run_id, key,
               arg_max(latest, (latest_step, latest_timestamp, latest)) AS latest,
               max(latest_step) AS last_step,
               min(min) AS min,
               max(max) AS max,
               sum(count)::BIGINT AS count
        FROM (
            SELECT experiment, run, key, latest, latest_step, latest_timestamp, min, max, count
            FROM metric_summaries
            UNION ALL
            SELECT experiment, run, key,
                   arg_max(value, (step, timestamp, value)), max(step),
                   arg_max(timestamp, (step, timestamp, value)),
                   min(value), max(value), count(*)
            FROM metrics_unsummarised
            GROUP BY experiment, run, key
        )
        GROUP BY experiment, run, key
    """,
    "run_states": """
        WITH events AS MATERIALIZED (  -- the files are read once, not once per use
            SELECT * FROM runs_log
        ), writers AS (  -- each writer's latest state of each run, and when it was heard of
            SELECT experiment, run, writer_id, arg_max(status, event_time) AS latest,
                   max(event_time) AS heard
            FROM events GROUP BY experiment, run, writer_id
        ), lost AS (  -- still running but silent for lost_after: dead or cut off
            SELECT *, latest = 'RUNNING'
                      AND heard < now() - to_microseconds(getvariable('lost_after_us')) AS lost
            FROM writers
        ), liveness AS (
            SELECT experiment, run,
                   bool_or(latest = 'RUNNING' AND NOT lost) AS running,
                   bool_or(lost) AS crashed,
                   max(heard) FILTER (WHERE lost) AS lost_at
            FROM lost GROUP BY experiment, run
        ), states AS (
            SELECT experiment, run AS run_id,
                   arg_max(run_name, event_time) FILTER (WHERE run_name IS NOT NULL) AS run_name,
                   CASE WHEN any_value(running) THEN 'RUNNING'
                        WHEN any_value(crashed) THEN 'CRASHED'
                        ELSE arg_max(status, event_time) END AS status,
                   arg_min(parent_run_id, event_time)
                       FILTER (WHERE parent_run_id IS NOT NULL) AS parent_run_id,
                   arg_max("user", event_time) AS "user",
                   arg_max(host, event_time) AS host,
                   min(start_time) AS start_time,
                   greatest(max(end_time), any_value(lost_at)) AS end_time
            FROM events JOIN liveness USING (experiment, run)
            GROUP BY experiment, run
        )
        SELECT * REPLACE (CASE WHEN status = 'RUNNING' THEN NULL ELSE end_time END AS end_time)
        FROM states
    """,
    "all_runs": f"""
        WITH states AS MATERIALIZED (  -- the tags files are read once
            SELECT * FROM tag_states
        ), tagged AS (
            SELECT experiment, run_id,
                   map(list(key ORDER BY key), list(value ORDER BY key)) AS tags
            FROM states
            WHERE run_id <> '{spec.EXPERIMENT_RUN}'
              AND NOT starts_with(key, '{spec.RESERVED_TAG_PREFIX}')
            GROUP BY experiment, run_id
        ), renamed AS (
            SELECT experiment, run_id, value AS renamed_to FROM states
            WHERE key = '{spec.RUN_NAME_TAG}'
        ), deleted AS (
            SELECT experiment, run_id, timestamp AS deleted_time FROM states
            WHERE key = '{spec.DELETED_TAG}'
        )
        SELECT s.experiment, s.run_id, coalesce(n.renamed_to, s.run_name) AS run_name,
               s.status, s.parent_run_id, s."user", s.host, s.start_time, s.end_time,
               epoch(s.end_time - s.start_time) AS duration_s,
               coalesce(t.tags, MAP {{}}) AS tags,
               CASE WHEN d.deleted_time IS NULL AND e.deleted_time IS NULL THEN 'active'
                    ELSE 'deleted' END AS lifecycle_stage,
               coalesce(d.deleted_time, e.deleted_time) AS deleted_time
        FROM run_states AS s
        LEFT JOIN tagged AS t ON t.experiment = s.experiment AND t.run_id = s.run_id
        LEFT JOIN renamed AS n ON n.experiment = s.experiment AND n.run_id = s.run_id
        LEFT JOIN deleted AS d ON d.experiment = s.experiment AND d.run_id = s.run_id
        LEFT JOIN deleted AS e
            ON e.experiment = s.experiment AND e.run_id = '{spec.EXPERIMENT_RUN}'
    """,
    "runs": """
        SELECT * EXCLUDE (lifecycle_stage, deleted_time) FROM all_runs
        WHERE lifecycle_stage = 'active'
    """,
    "all_experiments": f"""
        WITH states AS MATERIALIZED (
            SELECT * FROM tag_states
        ), deleted_runs AS (
            SELECT experiment, run_id FROM states WHERE key = '{spec.DELETED_TAG}'
        ), counted AS (
            SELECT s.experiment, count(*) FILTER (WHERE d.run_id IS NULL) AS runs,
                   min(s.start_time) AS first_start, max(s.start_time) AS last_start
            FROM run_states AS s
            LEFT JOIN deleted_runs AS d ON d.experiment = s.experiment AND d.run_id = s.run_id
            GROUP BY s.experiment
        ), own AS (
            SELECT experiment,
                   any_value(value) FILTER (WHERE key = '{spec.EXPERIMENT_NAME_TAG}') AS name,
                   any_value(timestamp) FILTER (WHERE key = '{spec.DELETED_TAG}')
                       AS deleted_time,
                   map(list(key ORDER BY key) FILTER (WHERE NOT reserved),
                       list(value ORDER BY key) FILTER (WHERE NOT reserved)) AS tags
            FROM (
                SELECT *, starts_with(key, '{spec.RESERVED_TAG_PREFIX}') AS reserved
                FROM states WHERE run_id = '{spec.EXPERIMENT_RUN}'
            )
            GROUP BY experiment
        )
        SELECT experiment, coalesce(own.name, experiment) AS name,
               CASE WHEN own.deleted_time IS NULL THEN 'active' ELSE 'deleted' END
                   AS lifecycle_stage,
               own.deleted_time, coalesce(counted.runs, 0) AS runs,
               counted.first_start, counted.last_start, coalesce(own.tags, MAP {{}}) AS tags
        FROM counted FULL OUTER JOIN own USING (experiment)
    """,
    "experiments": """
        SELECT * EXCLUDE (lifecycle_stage, deleted_time) FROM all_experiments
        WHERE lifecycle_stage = 'active'
    """,
}


def _of_runs(listing: _Listing, runs: list[str]) -> _Listing:
    """``listing`` without the inbox files of other runs than ``runs`` and the experiment's
    own tags (parts hold many runs: readers skip their row groups of other runs)."""
    wanted = {*runs, spec.EXPERIMENT_RUN}  # the experiment's own tags say if it is deleted
    return listing._replace(
        sources={
            source: [
                path
                for path in paths
                if path not in listing.runs_of or listing.runs_of[path] in wanted
            ]
            for source, paths in listing.sources.items()
        }
    )


class Store:
    """A store opened for querying (by :func:`connect`, which checks that it is one):
    ``store.sql("SELECT ...")`` over its views.

    The connection's own work never writes a file: its views read the store's files, and
    a result is written only where asked (``export``, a statement you run). With
    ``read_only``, ``sql`` refuses any statement but a read and DuckDB's settings are
    locked; a ``sandbox`` also confines DuckDB to the store's files (docs/QUERYING.md).
    A writer still ``RUNNING`` but silent for ``lost_after`` seconds counts as lost: a
    run whose running writers are all lost is ``CRASHED`` (docs/FORMAT.md).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        read_only: bool = False,
        sandbox: bool = False,
        lost_after: float = spec.LOST_AFTER,
    ) -> None:
        import duckdb

        number = isinstance(lost_after, (int, float)) and not isinstance(lost_after, bool)
        if not (number and 0 < lost_after < 1e12):
            raise InvalidValueError(
                f"lost_after must be a number of seconds > 0, got {lost_after!r}"
            )
        self.storage = storage
        self.lost_after = float(lost_after)
        self.read_only = read_only or sandbox
        self.sandbox = sandbox
        # Extensions come with the installed DuckDB or not at all: never downloaded. A
        # store's files never change, so their Parquet footers are read once a Store.
        self.connection = duckdb.connect(
            config={"autoinstall_known_extensions": False, "parquet_metadata_cache": True}
        )
        storage.register_in(self.connection)
        if sandbox:
            safety.confine(self.connection, storage.url)
        # Bound once, so that the views stay one SQL definition whatever the option.
        self.connection.execute(
            "SET VARIABLE lost_after_us = $1::BIGINT", [round(self.lost_after * 1e6)]
        )
        self._shapes: dict[str, tuple[bool, bool]] = {}
        self._pointed: dict[str, list[str]] = {}
        self._pinned: _Listing | None = None
        self._last_whole: _Listing | None = None  # what relations handed out read
        self._pinned_runs: dict[tuple[frozenset[str], frozenset[str]], _Listing] = {}
        self._experiment_of: dict[str, str] = {}  # run id -> experiment, as results showed
        self._listing_depth = 0
        self._relations_out = False
        try:
            self._point_views_at(_Listing({source: [] for source in _SOURCES}, {}, frozenset()))
            for table in spec.TABLES:
                columns = ", ".join(
                    f'"{name}"'
                    for name in spec.file_schema(table).names
                    if name != spec.SEQUENCE_COLUMN
                )
                self.connection.execute(
                    f"CREATE OR REPLACE VIEW {table}_log AS SELECT {columns} FROM {table}_files"
                )
            for name, body in _VIEWS.items():
                self.connection.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
            self._parser = duckdb.connect()  # parses queries, to tell which sources they read
            self._reads = {f"{table}_log": [f"{table}_files"] for table in spec.TABLES}
            self._reads.update((name, self._tables_named(body)) for name, body in _VIEWS.items())
        except duckdb.Error as error:
            raise StoreError(f"cannot read store {storage.url}: {error}") from None
        if self.read_only:
            safety.lock(self.connection)

    def _live_files(self, narrowed: dict[str, layout.ExperimentFiles] | None = None) -> _Listing:
        """The live files of each source, from one listing of the store and its newest
        snapshots (lakestore.layout), or from ``narrowed``, a listing of a few runs' files;
        files readers skip are left out (lakestore.files)."""
        storage = self.storage
        sources: dict[str, list[str]] = {source: [] for source in _SOURCES}
        runs_of: dict[str, str] = {}
        fetched: set[str] = set()

        def usable(paths: list[str], *, parts: bool = False) -> list[str]:
            """``paths`` less the files readers skip. A file DuckDB is to read has its
            footer checked first, as DuckDB would cast a column of text to numbers where
            the other readers refuse the file; but not a part on an object store, where a
            footer costs a request and only merges write parts. Fetched files are checked
            as they are read."""
            kept = [path for path in paths if not files.skipped(storage, path)]
            if parts and storage.remote:
                return kept
            sound = set(files.sound(storage, [path for path in kept if path not in fetched]))
            return [path for path in kept if path in fetched or path in sound]

        listed = layout.list_experiments(storage) if narrowed is None else narrowed
        for found in listed.values():
            snapshot = found.snapshot
            if storage.remote:
                fetched.update(
                    path for path, size in found.sizes.items() if size <= FETCH_WHOLE_BYTES
                )
            for table in spec.TABLES:
                parts = usable([] if snapshot is None else snapshot.live_parts(table), parts=True)
                inbox = usable(found.unmerged(table))
                sources[f"{table}_files"] += parts + inbox
                runs_of.update((path, found.inbox[path].run or "") for path in inbox)
                if table == "metrics":
                    summaries = usable(
                        [] if snapshot is None else snapshot.live_parts(spec.SUMMARIES),
                        parts=True,
                    )
                    sources["metric_summaries"] += summaries
                    sources["metrics_unsummarised"] += inbox if summaries else parts + inbox
        return _Listing(sources, runs_of, frozenset(fetched))

    def _point_views_at(self, listing: _Listing, sources: Iterable[str] = _SOURCES) -> None:
        """Point the view of each of ``sources`` at its files in ``listing``: DuckDB reads
        some, the rows of the others are fetched (raises _VanishedError if one is gone)."""
        import pyarrow as pa

        for source in sources:
            paths = listing.sources[source]
            if self._pointed.get(source) == paths:
                continue
            self._pointed.pop(source, None)
            read = [self.storage.path(path) for path in paths if path not in listing.fetched]
            rows = files.fetch_rows(self.storage, [p for p in paths if p in listing.fetched])
            gone = [path for path, table in rows.items() if table is None]
            if gone:
                raise _VanishedError(gone[0])
            if read:
                self.connection.execute(f"SET VARIABLE {source} = $1", [read])
            if rows:
                tables = [table for table in rows.values() if table is not None]
                self.connection.register(f"_{source}_fetched", pa.concat_tables(tables))
            shape = (bool(read), bool(rows))
            if self._shapes.get(source) != shape:
                # Creating the view reads a footer: remembered only once that succeeded.
                self._shapes.pop(source, None)
                self.connection.execute(
                    f"CREATE OR REPLACE VIEW {source} AS {_source(source, *shape)}"
                )
                self._shapes[source] = shape
            self._pointed[source] = paths

    @contextlib.contextmanager
    def _one_listing(self) -> Iterator[None]:
        """Within this block, every query of this store reads the files of one listing
        (listed again only if a file vanished or turned out unreadable)."""
        self._listing_depth += 1
        try:
            yield
        finally:
            self._listing_depth -= 1
            if not self._listing_depth:
                self._pinned = None
                self._pinned_runs.clear()

    def _sources_read_by(self, query: str) -> set[str]:
        """The sources ``query`` may read: those its tables and views lead to (all of them
        if that cannot be told), so that a query fetches no file it does not read."""
        pending = self._tables_named(query)
        seen: set[str] = set()
        found: set[str] = set()
        while pending:
            name = pending.pop().lower()
            if name in seen:
                continue
            seen.add(name)
            if name in _SOURCES:
                found.add(name)
            elif name in self._reads:
                pending += self._reads[name]
            else:  # a view of the user's, or a table: what does it read?
                for (body,) in self.connection.execute(
                    "SELECT sql FROM duckdb_views() WHERE lower(view_name) = $1", [name]
                ).fetchall():
                    # Its SQL is "CREATE VIEW name AS <select>": the parser takes only the
                    # select; a name holding " AS " fails to parse, and then every source
                    # counts as read.
                    pending += self._tables_named(body.split(" AS ", 1)[-1])
        return found

    def _tables_named(self, query: str) -> list[str]:
        """The tables and views named in ``query`` (a SELECT), or every source if it is
        another statement or cannot be parsed."""
        import json

        parsed = json.loads(
            self._parser.execute("SELECT json_serialize_sql($1)", [query]).fetchall()[0][0]
        )
        if parsed.get("error"):
            return list(_SOURCES)
        names = []
        pending: list[Any] = [parsed]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                if node.get("type") == "BASE_TABLE":
                    names.append(node["table_name"])
                pending += node.values()
            elif isinstance(node, list):
                pending += node
        return names

    def _on_live_files(
        self,
        run: Callable[[], T],
        *,
        sources: set[str],
        runs: list[str] | None = None,
        found: Callable[[T], Iterable[str]] | None = None,
    ) -> T:
        """``run()`` over the live files of ``sources``; again over a new listing if a file
        vanished or turned out unreadable. With ``runs``, the views see only those runs'
        inbox files (``run()`` must read at once). With ``found`` too (the runs a result
        holds; called on every result), they are listed alone where that takes few
        listings (layout.list_runs), unless this call already listed the store; if the
        result lacks one of them (in an experiment created since, say, or with no rows),
        it runs again over a whole listing.

        A merge deletes the files its snapshot replaced a grace period after publishing
        it; a listing made just before can name them. Binding a query reads file
        footers, so the files it names must exist then; a later listing names the part
        that holds their rows instead. A file that DuckDB cannot read is checked
        (lakestore.files) and, if it is at fault, skipped from then on.
        """
        import duckdb

        if runs is not None and found is not None and self._pinned is None:
            narrowed = self._narrowed_listing(runs, sources)
            if narrowed is not None:
                try:
                    self._point_views_at(narrowed, sources)
                    result = run()
                except (_VanishedError, duckdb.Error):
                    pass  # a whole listing sorts it out
                else:
                    if set(runs) <= set(found(result)):
                        return result
                finally:
                    if self._relations_out and self._last_whole is not None:
                        # Relations that sql() returned read when fetched: all runs. A file
                        # of theirs gone since fails them when fetched, as it would anyway.
                        with contextlib.suppress(_VanishedError, duckdb.Error):
                            self._point_views_at(self._last_whole, sources)
                self._pinned_runs.clear()
        vanished = 0
        while True:
            if self._pinned is None:
                self._pinned = self._live_files()
            whole = listing = self._last_whole = self._pinned
            if runs is not None:
                listing = _of_runs(whole, runs)
            try:
                try:
                    self._point_views_at(listing, sources)
                    result = run()
                    if found is not None:
                        found(result)  # it may learn from it (see _learn_experiments)
                    return result
                finally:
                    if listing != whole and self._relations_out:
                        # Relations that sql() returned read when fetched: all runs.
                        self._point_views_at(whole, sources)
            except _VanishedError as gone:
                self._pinned = None
                vanished += 1
                if vanished == _BIND_ATTEMPTS:
                    raise QueryError(
                        f"{self.storage.path(str(gone))} vanished while being read, "
                        f"{vanished} times over: is something deleting the store's files?"
                    ) from None
            except duckdb.Error as error:
                self._pinned = None
                if self._skip_unreadable(error, listing):
                    continue
                # Errors of Python filesystems (fsspec) arrive as a plain duckdb.Error.
                missing_file = isinstance(error, duckdb.IOException) or type(error) is duckdb.Error
                vanished += 1
                if not missing_file or vanished == _BIND_ATTEMPTS:
                    raise
                self._pinned = self._live_files()
                if self._pinned == whole:
                    raise

    def _narrowed_listing(self, runs: list[str], sources: set[str]) -> _Listing | None:
        """The live files of ``sources`` for ``runs`` alone (pinned for this call), or None
        where listing them alone would take more than NARROW_LISTINGS listings."""
        key = (frozenset(runs), frozenset(sources))
        if key not in self._pinned_runs:
            read = {_SOURCES[source] for source in sources}
            tables = [table for table in spec.TABLES if table in read]
            parts = [table for table in layout.PART_TABLES if table in read]
            known = [self._experiment_of.get(run_id) for run_id in runs]
            folders = (
                None
                if None in known
                else sorted({layout.experiment_folder(name) for name in known if name})
            )
            listed = [*runs, spec.EXPERIMENT_RUN] if "tags" in tables else runs
            narrowed = layout.list_runs(
                self.storage, listed, tables, parts, at_most=NARROW_LISTINGS, folders=folders
            )
            if narrowed is None:
                return None
            self._pinned_runs[key] = _of_runs(self._live_files(narrowed), runs)
        return self._pinned_runs[key]

    def _result(self, table: pa.Table) -> duckdb.DuckDBPyRelation:
        """``table``, computed already, as a relation on a cursor of its own: a result
        read as a stream (``.arrow()`` under DuckDB 2) holds its connection until it is
        drained, and must not hold the Store's."""
        return self.connection.cursor().from_arrow(table)

    def _learn_experiments(self, table: pa.Table) -> set[str]:
        """The runs in ``table`` (a result with ``experiment`` and ``run_id`` columns),
        whose experiments are remembered, so that later questions about them list only
        their experiment's files. (DuckDB finds them: pyarrow's group_by would import
        pyarrow.compute, a tenth of a second in a fresh process.)"""
        pairs = self.connection.from_arrow(table.select(["run_id", "experiment"]))
        found = dict(pairs.distinct().fetchall())
        self._experiment_of.update(found)
        return set(found)

    def _skip_unreadable(self, error: Exception, listing: _Listing) -> bool:
        """Whether a file that DuckDB failed on is unreadable (and now skipped).

        DuckDB names the file it cannot read, except when the first file of a list is
        foreign: then the view takes that file's columns and the query fails to bind.
        """
        import duckdb

        read = {
            source: [path for path in paths if path not in listing.fetched]
            for source, paths in listing.sources.items()
        }
        relative = {self.storage.path(path): path for paths in read.values() for path in paths}
        suspects = [relative[path] for path in _QUOTED.findall(str(error)) if path in relative]
        deep = True
        if not suspects:
            schema_errors = (
                duckdb.BinderException,
                duckdb.ConversionException,
                duckdb.InvalidInputException,
            )
            if not isinstance(error, schema_errors):
                return False
            suspects, deep = [paths[0] for paths in read.values() if paths], False
        found = False
        for path in dict.fromkeys(suspects):
            with contextlib.suppress(FileNotFoundError):
                found |= not files.check(self.storage, path, deep=deep)
        return found

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        """Run a SQL query over the store's views.

        The result is a DuckDB relation: ``.to_arrow_table()``, ``.pl()``, ``.df()``,
        ``.fetchall()``, ``.write_csv(path)``, ``.write_parquet(path)`` (``.arrow()`` is a
        stream under DuckDB 2, holding the connection until drained). Its rows are read
        when fetched, from the files live when this (or a later call of this store) listed
        them; docs/QUERYING.md says how long they are kept. A file DuckDB cannot read is found
        while binding, or else fails the fetch: :meth:`arrow` runs the query again
        without it. A store opened ``read_only`` (or as a sandbox) raises ReadOnlyError
        for any statement but a read.
        """
        if self.read_only:
            safety.check_reads_only(self.connection, query)
        self._relations_out = True
        return self._run(query, params, lambda relation: relation)

    def arrow(self, query: str, params: Any = None) -> pa.Table | None:
        """The whole result of ``query`` as a pyarrow Table (None for a statement without
        one), computed now: a file found unreadable while reading is skipped, with an
        UnreadableFileWarning, and the query run again without it."""
        if self.read_only:
            safety.check_reads_only(self.connection, query)
        return self._run(
            query, params, lambda relation: None if relation is None else relation.to_arrow_table()
        )

    def _run(
        self,
        query: str,
        params: Any,
        fetch: Callable[[duckdb.DuckDBPyRelation], T],
        *,
        runs: list[str] | None = None,
        found: Callable[[T], Iterable[str]] | None = None,
    ) -> T:
        """``fetch(relation of query)`` over the files live now (of ``runs`` only, if given),
        unchecked: for SQL this class writes or has checked."""
        import duckdb

        try:
            with self._one_listing():
                return self._on_live_files(
                    lambda: fetch(self.connection.sql(query, params=params)),
                    sources=self._sources_read_by(query),
                    runs=runs,
                    found=found,
                )
        except duckdb.PermissionException as error:
            where = f"; a sandbox reads only the store's files, under {self.storage.url}/"
            raise QueryError(f"{error}{where if self.sandbox else ''}") from None
        except duckdb.Error as error:
            raise QueryError(f"{type(error).__name__}: {error}") from None

    def export(
        self,
        query: str,
        path: str | os.PathLike[str],
        params: Any = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the result of ``query`` to ``path``; returns the number of rows written.

        The extension names the format: ``.parquet``, ``.csv``, ``.jsonl`` (or ``.ndjson``,
        ``.json``: JSON lines) or ``.arrow`` (``.feather``, ``.ipc``: Arrow IPC). Rows stream
        in batches, so the result can be larger than memory; ``progress(rows written)`` is
        called after each batch, and the file appears only once complete.
        """
        from lakestore.export import write_file

        if self.read_only:
            safety.check_reads_only(self.connection, query)
        # Run again from the start if a file turns out unreadable half-way: the file
        # appears only once complete.
        return self._run(
            query, params, lambda relation: write_file(relation, os.fspath(path), progress)
        )

    def export_view(
        self,
        view: str,
        path: str | os.PathLike[str],
        *,
        experiments: list[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write every row of the view ``view`` (one of EXPORTABLE_VIEWS), or those of
        ``experiments``, to ``path`` as :meth:`export` does; returns the number of rows."""
        if view not in EXPORTABLE_VIEWS:
            raise QueryError(f"cannot export {view!r}; choose one of {', '.join(EXPORTABLE_VIEWS)}")
        if experiments:
            query = f"SELECT * FROM {view} WHERE list_contains(?, experiment)"
            return self.export(query, path, [experiments], progress=progress)
        return self.export(f"SELECT * FROM {view}", path, progress=progress)

    def search_runs(
        self,
        filter_string: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int | None = 1000,
        experiments: list[str] | None = None,
        view_type: search.ViewType = "active_only",
    ) -> duckdb.DuckDBPyRelation:
        """Runs matching an MLflow filter, one row each, params and metrics as columns.

        ``filter_string`` uses MLflow's grammar (``metrics.acc > 0.9 and params.optimizer
        = 'adam' and tags.team LIKE 'vis%' and attributes.status = 'FINISHED'``) plus ``OR``
        and parentheses; a number compared with a numeric param compares numerically.
        ``order_by`` takes clauses such as ``"metrics.acc DESC"``; runs are otherwise
        newest first. Besides the columns of ``runs``, the result has ``params.<key>``
        (text), ``metrics.<key>`` (latest value) and ``tags.<key>`` columns.

        ``view_type`` takes deleted runs too (``all``) or alone (``deleted_only``), as
        MLflow's ``run_view_type`` does; the result then has the columns of ``all_runs``.
        """
        stages = search.lifecycle_stages(view_type)
        source = "runs" if stages == ["active"] else "all_runs"
        compiled = search.compile_filter(filter_string)
        order = search.parse_order_by(order_by or [])
        keys = compiled.keys + [key for key, _ in order]
        parameters: list[object] = [*search.join_parameters(keys), *compiled.parameters]
        where = [compiled.where]
        if source == "all_runs":
            where.append("list_contains(?, r.lifecycle_stage)")
            parameters.append(stages)
        if experiments is not None:
            where.append("list_contains(?, r.experiment)")
            parameters.append(list(experiments))
        order_terms = [
            term
            for index, (key, descending) in enumerate(order)
            for term in _order_terms(key, len(compiled.keys) + index, descending)
        ]
        order_terms += ["r.start_time DESC", "r.run_id"]
        if max_results is not None:
            if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 0:
                raise QueryError(
                    f"max_results must be a whole number >= 0 (or None: every run), "
                    f"got {max_results!r}"
                )
            parameters.append(max_results)
        selection = (
            f"SELECT r.run_id FROM {source} AS r\n{search.joins(keys)}\n"
            f"WHERE {' AND '.join(where)}\nORDER BY {', '.join(order_terms)}"
            + ("\nLIMIT ?" if max_results is not None else "")
        )
        with self._one_listing():
            run_ids = [row[0] for row in self._run(selection, parameters, _fetchall)]
            return self._wide_runs(run_ids, source)

    def _wide_runs(self, run_ids: list[str], source: str) -> duckdb.DuckDBPyRelation:
        """Rows of ``source`` (``runs`` or ``all_runs``) of ``run_ids``, in that order, with
        pivoted params, metrics and tags.

        DuckDB's PIVOT takes no bound parameters, so the ids go to a temporary table; the
        result is computed at once and returned as a relation over it.
        """
        selected = f"_selected_{uuid.uuid4().hex}"
        self.connection.execute(
            f"CREATE TEMP TABLE {selected} AS "
            "SELECT unnest($ids) AS run_id, generate_subscripts($ids, 1) AS position",
            {"ids": run_ids},
        )
        pivots = (
            ("params", "value", "params"),
            ("metrics", "latest", "metric_summary"),
            ("tags", "value", "tags"),
        )
        joins = [
            f"LEFT JOIN (PIVOT (SELECT run_id, '{prefix}.' || key AS name, {column} "
            f"FROM {view} WHERE run_id IN (SELECT run_id FROM {selected})) "
            f"ON name USING first({column}) GROUP BY run_id) AS {prefix}_wide "
            f"ON {prefix}_wide.run_id = runs.run_id"
            for prefix, column, view in pivots
        ]
        columns = ", ".join(f"{prefix}_wide.* EXCLUDE (run_id)" for prefix, _, _ in pivots)
        try:
            table = self._run(
                f"SELECT {selected}.position AS _position, runs.* EXCLUDE (tags), {columns}\n"
                f"FROM {selected} JOIN {source} AS runs USING (run_id)\n" + "\n".join(joins),
                None,
                _to_arrow,
                runs=run_ids,
            )
        except QueryError as error:
            if not any(limit in str(error) for limit in _WIDTH_LIMITS):
                raise
            raise QueryError(
                "search_runs gives each param, metric and tag key of the runs it finds a "
                f"column, and these runs have too many keys for DuckDB ({error}); narrow the "
                "search (filter, max_results) or query the metric_summary and params views"
            ) from None
        finally:
            self.connection.execute(f"DROP TABLE {selected}")
        # Sorted here: DuckDB sorts rows of thousands of columns slowly (quadratic in width).
        table = table.sort_by("_position").drop_columns("_position")
        self._learn_experiments(table)
        return self._result(table)

    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id``: attributes, params, latest metrics and tags (RunNotFoundError
        if the store has no such run)."""
        from lakestore.reading import run_record

        return run_record(self, run_id)

    def compare(self, run_ids: list[str], *, only_differences: bool = False) -> Comparison:
        """Params and summary metrics of ``run_ids`` side by side: a row per key, a column
        per run (named by run id). With ``only_differences``, keys whose value is the same
        in every run are left out.
        """
        with self._one_listing():
            return self._compare(list(dict.fromkeys(run_ids)), only_differences)

    def _compare(self, run_ids: list[str], only_differences: bool) -> Comparison:
        missing = set(run_ids) - {
            row[0]
            for row in self._run(
                "SELECT run_id FROM all_runs WHERE list_contains(?, run_id)",
                [run_ids],
                _fetchall,
                runs=run_ids,
            )
        }
        if missing:
            raise QueryError(f"no run {sorted(missing)[0]!r} in store {self.storage.url}")
        sides = {}
        for name, column, view in (
            ("params", "value", "params"),
            ("metrics", "latest", "metric_summary"),
        ):
            having = (
                f"HAVING count(DISTINCT {column}) > 1 OR count({column}) < len($ids)"
                if only_differences
                else ""
            )
            keys = f"SELECT key FROM {view} WHERE list_contains($ids, run_id) GROUP BY key {having}"
            columns = ", ".join(
                f"first({column}) FILTER (WHERE run_id = {_literal(run_id)}) "
                f"AS {_identifier(run_id)}"
                for run_id in run_ids
            )
            table = self._run(
                f"SELECT key, {columns} FROM {view} WHERE list_contains($ids, run_id) "
                f"AND key IN ({keys}) GROUP BY key ORDER BY key",
                {"ids": run_ids},
                _to_arrow,
                runs=run_ids,
            )
            sides[name] = self._result(table)
        return Comparison(params=sides["params"], metrics=sides["metrics"])

    def metric_history(
        self,
        run_ids: list[str] | str,
        keys: list[str] | str | None = None,
        *,
        points: int | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """The history of metrics ``keys`` (default: all) of ``run_ids`` as a tidy table,
        computed at once.

        With ``points``, at most that many rows a series, for plotting: its first and last
        rows, and the lowest and highest value of each of ``(points - 2) // 2`` equal slices
        of its steps, so that no spike, dip or end of the curve is lost.
        """
        run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        where = "list_contains($ids, run_id)"
        parameters: dict[str, object] = {"ids": run_ids}
        if keys is not None:
            where += " AND list_contains($keys, key)"
            parameters["keys"] = [keys] if isinstance(keys, str) else list(keys)
        if points is None:
            query = f"""
                SELECT experiment, run_id, key, value, step, timestamp FROM metrics
                WHERE {where} ORDER BY run_id, key, step, timestamp
            """
            history = self._run(
                query, parameters, _to_arrow, runs=run_ids, found=self._learn_experiments
            )
            return self._result(history)
        if not isinstance(points, int) or isinstance(points, bool) or points < 1:
            raise QueryError(f"points must be a whole number >= 1, got {points!r}")
        with self._one_listing():
            return self._result(self._downsampled(where, parameters, run_ids, points))

    def _downsampled(
        self, where: str, parameters: dict[str, object], run_ids: list[str], points: int
    ) -> pa.Table:
        """metric_history(points=...): series of at most ``points`` rows are read whole;
        longer ones are cut into equal slices of their steps, each read in one pass
        (an aggregate, not a sort: 10M points take a scan)."""
        import pyarrow as pa

        # The greatest step and the count of each series, from the metric summaries.
        bounds = self._run(
            f"SELECT experiment, run_id, key, last_step, count FROM metric_summary WHERE {where}",
            parameters,
            _fetchall,
            runs=run_ids,
            found=lambda rows: self._learn_experiments(
                pa.table({"experiment": [r[0] for r in rows], "run_id": [r[1] for r in rows]})
            ),
        )
        small = [row for row in bounds if row[4] <= points]
        large = [row for row in bounds if row[4] > points]
        columns = "experiment, run_id, key, value, step, timestamp"
        tables = []
        if small:
            tables.append(
                self._run(
                    f"SELECT {columns} FROM metrics WHERE {where} AND "
                    "list_contains($series, [experiment, run_id, key])",
                    {**parameters, "series": [list(row[:3]) for row in small]},
                    _to_arrow,
                    runs=run_ids,
                )
            )
        if large:
            tables.append(
                self._run(
                    _DOWNSAMPLED.format(where=where),
                    {
                        **parameters,
                        "bounds": [{"s": list(row[:3]), "high": row[3]} for row in large],
                        "slices": max(1, (points - 2) // 2),
                        "points": points,
                    },
                    _to_arrow,
                    runs=run_ids,
                )
            )
        if not tables:
            return self._run(
                f"SELECT {columns} FROM metrics WHERE false", None, _to_arrow, runs=run_ids
            )
        history = pa.concat_tables([table.cast(tables[0].schema) for table in tables])
        order = [("run_id", "ascending"), ("key", "ascending"), ("step", "ascending")]
        return history.sort_by([*order, ("timestamp", "ascending")])

    def _repr_html_(self) -> str:
        """The store's experiments, as a notebook shows a Store."""
        import html

        experiments = self.arrow("SELECT * FROM experiments ORDER BY experiment")
        title = f"<p>lakestore store <code>{html.escape(self.storage.url)}</code></p>"
        return title + _html(self.connection.from_arrow(experiments))

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.connection.close()
        self._parser.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_DOWNSAMPLED = """
    WITH bounds AS (
        SELECT b.s[1] AS experiment, b.s[2] AS run_id, b.s[3] AS key,
               greatest(1, ceil((b.high + 1) / $slices))::BIGINT AS width
        FROM (SELECT unnest($bounds) AS b)
    ), sliced AS MATERIALIZED (  -- per slice of steps: its lowest and highest, first and last
        SELECT m.experiment, m.run_id, m.key,
               greatest(-1, m.step // b.width) AS slice,  -- negative steps: one slice
               min(value) AS low_value, arg_min(step, value) AS low_step,
               arg_min(timestamp, value) AS low_time,
               max(value) AS high_value, arg_max(step, value) AS high_step,
               arg_max(timestamp, value) AS high_time,
               arg_min(value, step) AS first_value, min(step) AS first_step,
               arg_min(timestamp, step) AS first_time,
               arg_max(value, step) AS last_value, max(step) AS last_step,
               arg_max(timestamp, step) AS last_time
        FROM metrics AS m JOIN bounds AS b USING (experiment, run_id, key)
        WHERE {where}
        GROUP BY ALL
    ), picked AS (
        SELECT experiment, run_id, key, low_value AS value, low_step AS step,
               low_time AS timestamp
        FROM sliced WHERE $points >= 4
        UNION ALL
        SELECT experiment, run_id, key, high_value, high_step, high_time
        FROM sliced WHERE $points >= 4
        UNION ALL
        SELECT experiment, run_id, key, arg_min(first_value, slice), min(first_step),
               arg_min(first_time, slice)
        FROM sliced WHERE $points >= 2 GROUP BY ALL
        UNION ALL
        SELECT experiment, run_id, key, arg_max(last_value, slice), max(last_step),
               arg_max(last_time, slice)
        FROM sliced GROUP BY ALL
    )
    SELECT DISTINCT experiment, run_id, key, value, step, timestamp FROM picked
"""
"""metric_history(points=...) of the series longer than ``points``: one pass over their rows,
grouped by slice of steps from 0 to their greatest step (the metric summary's; steps below
0 make one slice), with no sort and no window; then the first and last row of each series
(by step) and the lowest and highest of each slice. Plain aggregates only: an aggregate
keyed on a tuple, or returning a struct, costs twice as much over 10M rows."""


def _fetchall(relation: duckdb.DuckDBPyRelation) -> list[tuple[Any, ...]]:
    return relation.fetchall()


def _to_arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    return relation.to_arrow_table()


def _source(source: str, read: bool, fetched: bool) -> str:
    """SQL reading the rows of ``source``: files DuckDB ``read`` (listed in a variable)
    and rows ``fetched`` (a registered table), or no rows."""
    schema = spec.schema_of(_SOURCES[source])
    columns = ", ".join(f'"{name}"' for name in schema.names)
    selects = []
    if read:
        selects.append(
            f"SELECT {columns} FROM read_parquet(getvariable('{source}'), "
            "hive_partitioning = false)"
        )
    if fetched:
        selects.append(f"SELECT {columns} FROM _{source}_fetched")
    if selects:
        return "\nUNION ALL ".join(selects)
    columns = ", ".join(
        f'NULL::{_DUCKDB_TYPES[str(field.type)]} AS "{field.name}"' for field in schema
    )
    return f"SELECT {columns} WHERE false"


class Comparison(NamedTuple):
    """Runs side by side: a row per key, a column per run id."""

    params: duckdb.DuckDBPyRelation
    metrics: duckdb.DuckDBPyRelation

    def _repr_html_(self) -> str:
        """Both tables, as a notebook shows them."""
        return "".join(
            f"<h4>{name}</h4>{_html(relation)}"
            for name, relation in (("params", self.params), ("metrics", self.metrics))
        )


def _html(relation: duckdb.DuckDBPyRelation) -> str:
    """``relation`` as the HTML table DuckDB gives notebooks."""
    return str(relation._repr_mimebundle_()["text/html"])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _order_terms(key: search.Key, index: int, descending: bool) -> list[str]:
    """The ORDER BY terms for ``key`` (joined as number ``index``). As in MLflow, missing
    values come last and NaN just before them, ascending or descending; params sort as
    numbers, then as text."""
    direction = "DESC" if descending else "ASC"
    if key.kind == "attributes":
        return [f"r.{search.ATTRIBUTES[key.name]} {direction} NULLS LAST"]
    if key.kind == "tags":
        return [f"{search.tag_column(key, index)} {direction} NULLS LAST"]
    number = f"m.latest_{index}" if key.kind == "metrics" else f"p.value_float_{index}"
    terms = [f"isnan({number}) NULLS LAST", f"{number} {direction} NULLS LAST"]
    if key.kind == "params":
        terms.append(f"p.value_{index} {direction} NULLS LAST")
    return terms


def connect(
    uri: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    *,
    read_only: bool = False,
    sandbox: bool = False,
    lost_after: float = spec.LOST_AFTER,
) -> Store:
    """Open the store at ``uri`` for querying (default: the store runs are written to).

    ``read_only`` refuses statements other than reads (``lakestore query`` opens stores
    so); ``sandbox`` also keeps DuckDB from opening any file outside the store, loading
    extensions or changing settings, for serving queries written by other people. A run
    whose writers still running have all been silent for ``lost_after`` seconds (default
    five heartbeats, 300) has status ``CRASHED``.
    """
    from lakestore.session import open_existing_store

    return Store(
        open_existing_store(uri, storage_options),
        read_only=read_only,
        sandbox=sandbox,
        lost_after=lost_after,
    )
