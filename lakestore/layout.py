"""The layout of a store, and the read protocol that says which files hold its rows.

This is the one module that builds and parses paths; docs/FORMAT.md is the contract it
implements. Under the store root::

    _lakestore.json                                          format marker
    experiments/<e>/inbox/<table>/<run>.<writer>-<seq>.parquet   files as writers flush them
    experiments/<e>/parts/<table>/<generation>-<32 hex>.parquet  files merges write
    experiments/<e>/snapshots/<generation>.parquet               which parts are live

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from lakestore import format

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import FileInfo, Storage

EXPERIMENTS = "experiments"
INBOX = "inbox"
PARTS = "parts"
SNAPSHOTS = "snapshots"

PART_TABLES = (*format.TABLES, format.SUMMARIES)
"""The tables that have parts: the four logged tables and the metric summaries."""

_INBOX_FILE = re.compile(
    r"(?P<run>[A-Za-z0-9_-]{1,64})\.(?P<writer>[0-9a-f]{32})-(?P<seq>[0-9]{6,})\.parquet"
)
_PART_FILE = re.compile(r"(?P<generation>[0-9]{10,})-[0-9a-f]{32}\.parquet")
_SNAPSHOT_FILE = re.compile(r"(?P<generation>[0-9]{10,})\.parquet")


def experiment_folder(experiment: str) -> str:
    """The folder, relative to the root, of an experiment's files."""
    return f"{EXPERIMENTS}/{format.escape_name(experiment)}"


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


class Entry(NamedTuple):
    """What a path says of its file."""

    kind: str
    """``"inbox"``, ``"part"`` or ``"snapshot"``."""
    folder: str
    """The experiment's folder, ``experiments/<e>``."""
    table: str | None = None
    run: str | None = None
    writer: str | None = None
    sequence: int = -1
    generation: int = -1


def parse(path: str) -> Entry | None:
    """What ``path`` (relative to the root) is, or None if it is not a lakestore file."""
    segments = path.split("/")
    if len(segments) < 4 or segments[0] != EXPERIMENTS or not _is_utf8(path):
        return None
    folder = "/".join(segments[:2])
    if len(segments) == 4 and segments[2] == SNAPSHOTS:
        match = _SNAPSHOT_FILE.fullmatch(segments[3])
        if match:
            return Entry("snapshot", folder, generation=int(match["generation"]))
    if len(segments) == 5 and segments[2] == INBOX and segments[3] in format.TABLES:
        match = _INBOX_FILE.fullmatch(segments[4])
        if match:
            return Entry(
                "inbox", folder, segments[3], match["run"], match["writer"], int(match["seq"])
            )
    if len(segments) == 5 and segments[2] == PARTS and segments[3] in PART_TABLES:
        match = _PART_FILE.fullmatch(segments[4])
        if match:
            return Entry("part", folder, segments[3], generation=int(match["generation"]))
    return None


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

        schema = format.snapshot_schema()
        rows: list[dict[str, object]] = [
            {"kind": "part", "table": table, "path": part.path, "rows": part.rows}
            for table in sorted(self.parts)
            for part in self.parts[table]
        ]
        rows += [
            {"kind": "merged", format.WRITER_COLUMN: writer, "merged_through": through}
            for writer, through in sorted(self.merged.items())
        ]
        for row in rows:
            row["experiment"] = self.experiment
            row["generation"] = self.generation
        # Built column by column: Table.from_pylist imports pandas (a merge's first 0.3 s).
        return pa.Table.from_arrays(
            [format.arrow_column([row.get(f.name) for row in rows], f.type) for f in schema],
            schema=schema,
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> Snapshot:
        """The snapshot whose file holds ``table`` (ValueError if it is not one)."""
        problem = schema_problem(table.schema, format.snapshot_schema())
        if problem is not None:
            raise ValueError(problem)
        experiments = set(table.column("experiment").to_pylist())
        generations = set(table.column("generation").to_pylist())
        if len(experiments) != 1 or len(generations) != 1:
            raise ValueError("its rows name more than one experiment or generation")
        snapshot = cls(experiments.pop(), generations.pop())
        for row in table.to_pylist():
            if row["kind"] == "part":
                snapshot.parts.setdefault(row["table"], []).append(Part(row["path"], row["rows"]))
            elif row["kind"] == "merged":
                snapshot.merged[row[format.WRITER_COLUMN]] = row["merged_through"]
        return snapshot

    def live_parts(self, table: str) -> list[str]:
        """The paths of the live parts of ``table``."""
        return [part.path for part in self.parts.get(table, [])]


@dataclass
class ExperimentFiles:
    """One experiment's files as one listing found them, and its newest snapshot."""

    folder: str
    snapshot: Snapshot | None = None
    snapshot_file: str | None = None
    snapshots: dict[str, FileInfo] = field(default_factory=dict)
    inbox: dict[str, Entry] = field(default_factory=dict)
    parts: dict[str, Entry] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def merged_through(self, writer: str) -> int:
        """The sequence number through which ``writer``'s inbox files are merged."""
        return -1 if self.snapshot is None else self.snapshot.merged.get(writer, -1)

    def unmerged(self, table: str | None = None) -> list[str]:
        """The inbox files (of ``table``, or all) whose rows no live part holds."""
        return [
            path
            for path, entry in self.inbox.items()
            if (table is None or entry.table == table)
            and entry.sequence > self.merged_through(entry.writer or "")
        ]

    def live(self, table: str) -> list[str]:
        """The files holding the rows of ``table``: live parts and unmerged inbox files."""
        parts = [] if self.snapshot is None else self.snapshot.live_parts(table)
        return parts + self.unmerged(table)


def list_experiments(storage: Storage, folder: str | None = None) -> dict[str, ExperimentFiles]:
    """Every experiment's files (or those of the one in ``folder``), from one listing, each
    with its newest readable snapshot: what a query reads, whatever merges happen meanwhile.

    Files whose names are not lakestore's are reported (lakestore.files) and left out.
    """
    from lakestore import files

    prefix = EXPERIMENTS if folder is None else folder
    experiments: dict[str, ExperimentFiles] = {}
    for path, info in sorted(storage.list_files(prefix).items()):
        entry = parse(path)
        if entry is None:
            files.skip(storage, path, not_lakestore_reason(path))
            continue
        found = experiments.setdefault(entry.folder, ExperimentFiles(entry.folder))
        found.sizes[path] = info.size
        if entry.kind == "snapshot":
            found.snapshots[path] = info
        elif entry.kind == "inbox":
            found.inbox[path] = entry
        else:
            found.parts[path] = entry
    newest = {folder: _by_generation(found.snapshots) for folder, found in experiments.items()}
    contents = storage.get_many([paths[0] for paths in newest.values() if paths])
    for folder, found in experiments.items():
        candidates = newest[folder]
        for index, path in enumerate(candidates):
            data = contents.get(path) if index == 0 else storage.get(path)
            snapshot = read_snapshot(storage, path, data)
            if snapshot is not None:
                found.snapshot, found.snapshot_file = snapshot, path
                break
    return experiments


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
        return Snapshot.from_table(pq.ParquetFile(pa.BufferReader(data)).read())
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
            return format.unescape_name(folder.split("/", 1)[1])
    for folder, found in experiments.items():
        for path in [] if found.snapshot is None else found.snapshot.live_parts("runs"):
            rows = _read_run_rows(storage, path, run_id)
            if rows is not None and rows.num_rows:
                return format.unescape_name(folder.split("/", 1)[1])
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
    tables = [
        files.read_rows(storage, path, data) for path, data in storage.get_many(inbox).items()
    ]
    tables += [_read_run_rows(storage, path, run_id) for path in parts]
    read = [rows for rows in tables if rows is not None]
    return pa.concat_tables(read) if read else format.file_schema(table).empty_table()


def _read_run_rows(storage: Storage, path: str, run_id: str) -> pa.Table | None:
    """The rows of ``run_id`` in the part ``path`` (reading only the row groups that may
    hold them), or None if the part cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakestore import files

    schema = format.schema_of(table_of(path))
    try:
        with storage.open_read(path) as file:
            rows = pq.read_table(file, filters=[("run", "=", run_id)])
        if schema_problem(rows.schema, schema) is None:
            return rows.select(schema.names).cast(schema)
    except pa.ArrowException:
        pass
    except FileNotFoundError:
        return None
    files.check(storage, path, deep=True)
    return None
