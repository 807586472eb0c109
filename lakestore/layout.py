"""The layout of a store, and the read protocol that says which files hold its rows.

This is the one module that builds and parses paths; docs/FORMAT.md is the contract it
implements. Under the store root::

    _lakestore.json                                          format marker
    experiments/<e>/inbox/<table>/<run>.<writer>-<seq>.parquet   files as writers flush them
    experiments/<e>/parts/<table>/<generation>-<32 hex>.parquet  files merges write
    experiments/<e>/snapshots/<generation>.parquet               which parts are live
    experiments/<e>/leases/<generation>.lease                    a merge under way

An experiment's *snapshot* with the greatest generation names its live parts and, for
each writer, the sequence number through which that writer's inbox files are merged into
them. The rows of an experiment are those of its live parts and of its inbox files with a
greater sequence number than their writer's: each row exactly once, whatever merges run
meanwhile, since a merge publishes its parts and its new sequence numbers together, in
one file created exclusively.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from lakestore import spec

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import FileInfo, Storage

EXPERIMENTS = "experiments"
INBOX = "inbox"
PARTS = "parts"
SNAPSHOTS = "snapshots"
LEASES = "leases"

PART_TABLES = (*spec.TABLES, spec.SUMMARIES)
"""The tables that have parts: the four logged tables and the metric summaries."""

_PATH = re.compile(
    rf"(?P<folder>{EXPERIMENTS}/[^/]+)/(?:"
    rf"{INBOX}/(?P<table>{'|'.join(spec.TABLES)})/"
    r"(?P<run>[A-Za-z0-9_-]{1,64})\.(?P<writer>[0-9a-f]{32})-(?P<seq>[0-9]{6,})\.parquet"
    rf"|{PARTS}/(?P<part_table>{'|'.join(PART_TABLES)})/"
    r"(?P<generation>[0-9]{10,})-[0-9a-f]{32}\.parquet"
    rf"|{SNAPSHOTS}/(?P<snapshot>[0-9]{{10,}})\.parquet"
    rf"|{LEASES}/(?P<lease>[0-9]{{10,}})\.lease)"
)
"""The paths of a store's files: ``experiments/<e>/`` then an inbox file, a part, a
snapshot or a lease."""


def experiment_folder(experiment: str) -> str:
    """The folder, relative to the root, of an experiment's files."""
    return f"{EXPERIMENTS}/{spec.escape_name(experiment)}"


def inbox_path(experiment: str, table: str, run_id: str, writer_id: str, sequence: int) -> str:
    """Where a writer puts its ``sequence``-th file: unique without any coordination."""
    name = f"{run_id}.{writer_id}-{sequence:06d}.parquet"
    return f"{experiment_folder(experiment)}/{INBOX}/{table}/{name}"


def part_path(folder: str, table: str, generation: int) -> str:
    """A new, unique name for a part of ``table`` that a merge to ``generation`` writes."""
    return f"{folder}/{PARTS}/{table}/{generation:010d}-{uuid.uuid4().hex}.parquet"


def snapshot_path(folder: str, generation: int) -> str:
    """The snapshot of generation ``generation`` of the experiment in ``folder``."""
    return f"{folder}/{SNAPSHOTS}/{generation:010d}.parquet"


def lease_path(folder: str, generation: int) -> str:
    """The lease a merge to ``generation`` of the experiment in ``folder`` takes, so that
    other writers leave that merge to it (lakestore.merge)."""
    return f"{folder}/{LEASES}/{generation:010d}.lease"


class Entry(NamedTuple):
    """What a path says of its file."""

    kind: str
    """``"inbox"``, ``"part"``, ``"snapshot"`` or ``"lease"``."""
    folder: str
    """The experiment's folder, ``experiments/<e>``."""
    table: str | None = None
    run: str | None = None
    writer: str | None = None
    sequence: int = -1
    generation: int = -1


def parse(path: str) -> Entry | None:
    """What ``path`` (relative to the root) is, or None if it is not a lakestore file."""
    match = _PATH.fullmatch(path)
    if match is None or not _is_utf8(path):
        return None
    folder, table = match["folder"], match["table"]
    if table is not None:
        return Entry("inbox", folder, table, match["run"], match["writer"], int(match["seq"]))
    if match["part_table"] is not None:
        return Entry("part", folder, match["part_table"], generation=int(match["generation"]))
    if match["snapshot"] is not None:
        return Entry("snapshot", folder, generation=int(match["snapshot"]))
    return Entry("lease", folder, generation=int(match["lease"]))


def table_of(path: str) -> str:
    """The table a data file (inbox file or part) of ``path`` belongs to."""
    entry = parse(path)
    if entry is None:
        raise ValueError(f"{path} is not a lakestore data file")
    return "snapshots" if entry.table is None else entry.table


class Part(NamedTuple):
    """A live part, as its snapshot names it."""

    path: str
    rows: int


@dataclass
class Snapshot:
    """The state of an experiment that a merge published: its live parts, and through
    which sequence number each writer's inbox files are merged into them."""

    experiment: str
    generation: int = 0
    parts: dict[str, list[Part]] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)

    def to_table(self) -> pa.Table:
        """The snapshot as the rows of its file."""
        import pyarrow as pa

        schema = spec.snapshot_schema()
        rows: list[dict[str, object]] = [
            {"kind": "part", "table": table, "path": part.path, "rows": part.rows}
            for table in sorted(self.parts)
            for part in self.parts[table]
        ]
        rows += [
            {"kind": "merged", spec.WRITER_COLUMN: writer, "merged_through": through}
            for writer, through in sorted(self.merged.items())
        ]
        for row in rows:
            row["experiment"] = self.experiment
            row["generation"] = self.generation
        # Built column by column: Table.from_pylist imports pandas (a merge's first 0.3 s).
        return pa.Table.from_arrays(
            [spec.arrow_column([row.get(f.name) for row in rows], f.type) for f in schema],
            schema=schema,
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> Snapshot:
        """The snapshot whose file holds ``table`` (ValueError if it is not one)."""
        problem = schema_problem(table.schema, spec.snapshot_schema())
        if problem is not None:
            raise ValueError(problem)
        experiments = set(table.column("experiment").to_pylist())
        generations = set(table.column("generation").to_pylist())
        if len(experiments) != 1 or len(generations) != 1:
            raise ValueError("its rows name more than one experiment or generation")
        snapshot = cls(experiments.pop(), generations.pop())
        columns = ["kind", "table", "path", "rows", spec.WRITER_COLUMN, "merged_through"]
        kinds, tables, paths, rows, writers, through = (
            table.column(name).to_pylist() for name in columns
        )
        for index, kind in enumerate(kinds):
            if kind == "part":
                snapshot.parts.setdefault(tables[index], []).append(Part(paths[index], rows[index]))
            elif kind == "merged":
                snapshot.merged[writers[index]] = through[index]
        return snapshot

    def live_parts(self, table: str) -> list[str]:
        """The paths of the live parts of ``table``."""
        return [part.path for part in self.parts.get(table, [])]

    def all_parts(self) -> list[str]:
        """The paths of the live parts of every table."""
        return [part.path for parts in self.parts.values() for part in parts]


@dataclass
class ExperimentFiles:
    """One experiment's files as one listing found them, and its newest snapshot."""

    folder: str
    snapshot: Snapshot | None = None
    snapshot_file: str | None = None
    snapshots: dict[str, FileInfo] = field(default_factory=dict)
    leases: dict[str, FileInfo] = field(default_factory=dict)
    inbox: dict[str, Entry] = field(default_factory=dict)
    parts: dict[str, Entry] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    """Bytes of each file readers or merges may use: unmerged inbox files, live parts and
    snapshots (a file deleted since the listing is missing)."""

    def merged_through(self, writer: str) -> int:
        """The sequence number through which ``writer``'s inbox files are merged."""
        return -1 if self.snapshot is None else self.snapshot.merged.get(writer, -1)

    _unmerged: tuple[Snapshot | None, int, dict[str | None, list[str]]] | None = field(
        default=None, repr=False, compare=False
    )

    def unmerged(self, table: str | None = None) -> list[str]:
        """The inbox files (of ``table``, or all) whose rows no live part holds."""
        known = self._unmerged
        if known is None or known[0] is not self.snapshot or known[1] != len(self.inbox):
            merged = {} if self.snapshot is None else self.snapshot.merged
            by_table: dict[str | None, list[str]] = {None: []}
            for path, entry in self.inbox.items():
                if entry.sequence > merged.get(entry.writer or "", -1):
                    by_table[None].append(path)
                    by_table.setdefault(entry.table, []).append(path)
            known = self._unmerged = (self.snapshot, len(self.inbox), by_table)
        return list(known[2].get(table, []))

    def live(self, table: str) -> list[str]:
        """The files holding the rows of ``table``: live parts and unmerged inbox files."""
        parts = [] if self.snapshot is None else self.snapshot.live_parts(table)
        return parts + self.unmerged(table)


def list_experiments(storage: Storage, folder: str | None = None) -> dict[str, ExperimentFiles]:
    """Every experiment's files (or those of the one in ``folder``), from one listing, each
    with its newest readable snapshot: what a query reads, whatever merges happen meanwhile.

    Files whose names are not lakestore's are reported (lakestore.files) and left out.
    """
    return _experiments(storage, storage.list_names(EXPERIMENTS if folder is None else folder))


def list_runs(
    storage: Storage,
    run_ids: list[str],
    tables: list[str],
    part_tables: list[str],
    *,
    at_most: int,
    folders: list[str] | None = None,
) -> dict[str, ExperimentFiles] | None:
    """As :func:`list_experiments`, but with only the inbox files of ``run_ids`` in
    ``tables``, and the sizes of the live parts of ``part_tables`` only: in each
    experiment, a listing of each run's own names, then of the parts, then of the
    snapshots (the inbox first, as the read protocol says). A question about a few runs
    then costs a few small listings, not a listing of the whole store; None if it would
    take more than ``at_most`` listings. ``folders``, if given, are the only experiments
    that may hold the runs (a run never leaves its experiment).

    A run whose files are all merged has none listed: the parts hold its rows.
    """
    if folders is None:
        folders = [f"{EXPERIMENTS}/{name}" for name in storage.list_folders(EXPERIMENTS)]
    if len(folders) * (len(tables) * len(run_ids) + len(part_tables) + 1) > at_most:
        return None
    listed: dict[str, FileInfo | None] = {}
    for folder in folders:
        for table in tables:
            for run_id in run_ids:
                listed.update(storage.list_names(f"{folder}/{INBOX}/{table}", start=f"{run_id}."))
    for folder in folders:
        for table in part_tables:
            listed.update(storage.list_names(f"{folder}/{PARTS}/{table}"))
        listed.update(storage.list_names(f"{folder}/{SNAPSHOTS}"))
    return _experiments(storage, listed, part_tables)


def _experiments(
    storage: Storage,
    listed: dict[str, FileInfo | None],
    part_tables: Iterable[str] = PART_TABLES,
) -> dict[str, ExperimentFiles]:
    """The experiments whose files ``listed`` names, each with its newest readable
    snapshot, and the sizes of the files readers may use (of the parts, those of
    ``part_tables``)."""
    from lakestore import files

    experiments: dict[str, ExperimentFiles] = {}
    timed: list[tuple[str, str]] = []  # (path, kind) of snapshots and leases
    for path in sorted(listed):
        entry = parse(path)
        if entry is None:
            files.skip(storage, path, not_lakestore_reason(path))
            continue
        found = experiments.setdefault(entry.folder, ExperimentFiles(entry.folder))
        if entry.kind == "inbox":
            found.inbox[path] = entry
        elif entry.kind == "part":
            found.parts[path] = entry
        else:
            timed.append((path, entry.kind))
    # Sizes and times cost a stat a file in a local folder: read only those of the files
    # that readers and merges may use (not of those waiting to be deleted).
    infos = _infos(storage, listed, [path for path, _ in timed])
    for path, kind in timed:
        if path in infos:
            found = experiments[path.rsplit("/", 2)[0]]
            (found.snapshots if kind == "snapshot" else found.leases)[path] = infos[path]
    newest = {folder: _by_generation(found.snapshots) for folder, found in experiments.items()}
    contents = files.read_files(storage, [paths[0] for paths in newest.values() if paths])
    for folder, found in experiments.items():
        candidates = newest[folder]
        for index, path in enumerate(candidates):
            data = contents.get(path) if index == 0 else files.read_files(storage, [path]).get(path)
            snapshot = read_snapshot(storage, path, data)
            if snapshot is not None:
                found.snapshot, found.snapshot_file = snapshot, path
                break
    parts = {
        found.folder: [path for table in part_tables for path in found.snapshot.live_parts(table)]
        for found in experiments.values()
        if found.snapshot is not None
    }
    sized = [
        path
        for found in experiments.values()
        for path in [*found.unmerged(), *parts.get(found.folder, [])]
    ]
    infos = _infos(storage, listed, sized)
    for found in experiments.values():
        found.sizes = {
            path: infos[path].size
            for path in [*found.unmerged(), *parts.get(found.folder, [])]
            if path in infos
        }
        found.sizes.update((path, info.size) for path, info in found.snapshots.items())
    return experiments


def _infos(
    storage: Storage, listed: dict[str, FileInfo | None], paths: list[str]
) -> dict[str, FileInfo]:
    """The size and time of each file of ``paths`` still there: from the listing when it
    told them, else read now."""
    infos = {path: info for path in paths if (info := listed.get(path)) is not None}
    missing = [path for path in paths if path not in infos]
    if missing:
        infos.update(storage.file_infos(missing))
    return infos


def _is_utf8(path: str) -> bool:
    """False for a local name whose bytes are not UTF-8 (Python holds them as surrogates):
    no engine takes such a path."""
    if path.isascii():
        return True
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_lakestore_reason(path: str) -> str:
    """Why ``path``, which :func:`parse` does not take, is no lakestore file."""
    if not _is_utf8(path):
        return "its path is not UTF-8, which no engine reads"
    return "its name is not that of a lakestore file"


def _by_generation(snapshots: dict[str, FileInfo]) -> list[str]:
    return sorted(snapshots, key=lambda path: parse(path).generation, reverse=True)  # type: ignore[union-attr]


def read_snapshot(storage: Storage, path: str, data: bytes | None) -> Snapshot | None:
    """The snapshot in ``data`` (the content of ``path``), or None if it is gone or cannot
    be read: an unreadable one is reported and readers fall back to the one before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakestore import files

    if data is None:
        return None
    try:
        # Read in this thread (see files.read_rows): no Arrow thread holds Python's bytes.
        return Snapshot.from_table(pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False))
    except (pa.ArrowException, ValueError, KeyError, TypeError) as error:
        files.skip(storage, path, f"it is not a readable snapshot ({error})")
        return None


def schema_problem(schema: pa.Schema, expected: pa.Schema) -> str | None:
    """Why a file of ``schema`` cannot be read as ``expected``, or None if it can.

    Columns beyond the expected ones are allowed; types must be of the same family
    (text, integer, float, timestamp), which every reader converts between.
    """
    missing = [field.name for field in expected if field.name not in schema.names]
    if missing:
        return f"it has no column {', '.join(missing)} (its columns: {', '.join(schema.names)})"
    for expected_field in expected:
        actual = schema.field(expected_field.name).type
        if _family(actual) != _family(expected_field.type):
            return f"its column {expected_field.name} holds {actual}, not {expected_field.type}"
    return None


def _family(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    for name, test in (
        ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
        ("integer", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("timestamp", pa.types.is_timestamp),
    ):
        if test(arrow_type):
            return name
    return str(arrow_type)


def find_run(storage: Storage, run_id: str) -> str | None:
    """The name of the experiment that holds ``run_id``, if any."""
    experiments = list_experiments(storage)
    for folder, found in experiments.items():
        if any(entry.run == run_id for entry in found.inbox.values()):
            return spec.unescape_name(folder.split("/", 1)[1])
    for folder, found in experiments.items():
        for path in [] if found.snapshot is None else found.snapshot.live_parts("runs"):
            rows = _read_run_rows(storage, path, run_id)
            if rows is not None and rows.num_rows:
                return spec.unescape_name(folder.split("/", 1)[1])
    return None


def read_run(storage: Storage, experiment: str, table: str, run_id: str) -> pa.Table:
    """The rows of ``table`` logged to the run ``run_id`` of ``experiment``, in the
    table's file schema; files that cannot be read are skipped, with a warning."""
    import pyarrow as pa

    from lakestore import files

    folder = experiment_folder(experiment)
    found = list_experiments(storage, folder).get(folder, ExperimentFiles(folder))
    inbox = [path for path in found.unmerged(table) if found.inbox[path].run == run_id]
    parts = [] if found.snapshot is None else found.snapshot.live_parts(table)
    contents = files.read_files(storage, inbox)
    tables = [files.read_rows(storage, path, data) for path, data in contents.items()]
    tables += [_read_run_rows(storage, path, run_id) for path in parts]
    read = [rows for rows in tables if rows is not None]
    return pa.concat_tables(read) if read else spec.file_schema(table).empty_table()


def _read_run_rows(storage: Storage, path: str, run_id: str) -> pa.Table | None:
    """The rows of ``run_id`` in the part ``path`` (reading only the row groups that may
    hold them), or None if the part cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakestore import files

    schema = spec.schema_of(table_of(path))
    try:
        with storage.open_read(path) as file:
            rows = pq.read_table(
                file, filters=[("run", "=", run_id)], use_threads=False, pre_buffer=False
            )
        if schema_problem(rows.schema, schema) is None:
            return rows.select(schema.names).cast(schema)
    except (pa.ArrowException, PermissionError):
        pass
    except FileNotFoundError:
        return None
    files.check(storage, path, deep=True)
    return None
