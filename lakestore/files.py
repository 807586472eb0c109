"""Which files of a store lakestore reads, and the ones its readers skip.

A store may hold files that are not lakestore's (a CSV or a notebook's Parquet output
dropped into a run folder) or that no reader can decode (a copy cut short, garbage
bytes). Plain readers of the dataset fail on them; lakestore's readers leave them out and
say so, once per process, with an :class:`UnreadableFileWarning` naming the file and the
reason, so that one bad file never makes a store unreadable:

- a file whose name is not that of a lakestore file is left out when listing;
- a file with such a name is checked when a reader fails on it (or, for parts, when its
  footer is read, and for local files, by its magic bytes when first listed), and left
  out from then on if its content is not a Parquet file with the table's columns.

Files never change once written, so a verdict holds for the life of the process.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

from lakestore import format
from lakestore.errors import UnreadableFileWarning

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import Storage

COMPACTED_ROOT = "compacted"
SUMMARIES = "metric_summaries"

_RUN_FILE = re.compile(r"[0-9a-f]{32}-[0-9]{6,}\.parquet")
_PART = re.compile(r"part-[0-9]{10,}\.parquet")
_SUMMARY = re.compile(r"part-[0-9]{10,}-[0-9a-f]{32}\.parquet")

_SKIPPED: dict[tuple[str, str], str] = {}
"""(store URL, root-relative path) of each file readers skip -> why."""

_WHOLE: set[tuple[str, str]] = set()
"""Files whose magic bytes were found (or not looked for), so that each is read once."""

_SOUND: set[tuple[str, str]] = set()
"""Files whose footer was read and whose columns are right, so that each is read once."""


def kind(path: str) -> str | None:
    """``"run"``, ``"part"`` or ``"summary"`` for a root-relative path of that form, else
    None: ``<table>/experiment=<e>/run=<r>/<writer id>-<sequence>.parquet``,
    ``compacted/<table>/experiment=<e>/part-<generation>.parquet`` and
    ``compacted/metric_summaries/experiment=<e>/part-<generation>-<32 hex>.parquet``."""
    segments = path.split("/")
    if (
        len(segments) == 4
        and segments[0] in format.TABLES
        and segments[1].startswith("experiment=")
        and segments[2].startswith("run=")
        and _RUN_FILE.fullmatch(segments[3])
    ):
        return "run"
    if (
        len(segments) == 4
        and segments[0] == COMPACTED_ROOT
        and segments[2].startswith("experiment=")
    ):
        if segments[1] in format.TABLES and _PART.fullmatch(segments[3]):
            return "part"
        if segments[1] == SUMMARIES and _SUMMARY.fullmatch(segments[3]):
            return "summary"
    return None


def recognised(storage: Storage, paths: list[str]) -> list[str]:
    """``paths`` less the files whose names are not lakestore's, which are reported."""
    kept = []
    for path in paths:
        if kind(path) is not None:
            kept.append(path)
        else:
            skip(storage, path, "its name is not that of a lakestore file")
    return kept


def whole(storage: Storage, paths: list[str]) -> list[str]:
    """``paths`` less the files surely not whole Parquet files (checked by their magic
    bytes, on local stores only, once a process), which are skipped from now on."""
    kept = []
    for path in paths:
        key = (storage.url, path)
        if key not in _WHOLE and key not in _SKIPPED:
            try:
                ends = storage.has_parquet_ends(path)
            except FileNotFoundError:  # deleted by a compaction: readers list again
                kept.append(path)
                continue
            if ends:
                _WHOLE.add(key)
            else:
                skip(storage, path, "it is not a whole Parquet file (no PAR1 at its start or end)")
        if key in _WHOLE:
            kept.append(path)
    if len(_WHOLE) > 1_000_000:
        _WHOLE.clear()
    return kept


def skip(storage: Storage, path: str, reason: str) -> None:
    """Leave ``path`` out of every reading from now on, and warn once."""
    key = (storage.url, path)
    if key in _SKIPPED:
        return
    _SKIPPED[key] = reason
    warnings.warn(
        UnreadableFileWarning(
            f"skipping {storage.path(path)}: {reason}. lakestore's readers leave it out; "
            "plain Parquet readers fail on it: move it out of the store "
            "(lakestore check lists such files)"
        ),
        stacklevel=3,
    )


def skipped(storage: Storage, path: str) -> bool:
    """Whether readers leave ``path`` out."""
    return (storage.url, path) in _SKIPPED


def expected_schema(path: str) -> pa.Schema:
    """The columns a file of ``path``'s kind must have (docs/FORMAT.md)."""
    import pyarrow as pa

    segments = path.split("/")
    if kind(path) == "run":
        return format.arrow_schema(segments[0])
    if kind(path) == "summary":
        return summary_schema()
    return pa.schema([pa.field("run", pa.string()), *format.arrow_schema(segments[1])])


def summary_schema() -> pa.Schema:
    """The Arrow schema of a metric summary file (docs/FORMAT.md)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("run", pa.string()),
            ("key", pa.string()),
            ("latest", pa.float64()),
            ("latest_step", pa.int64()),
            ("latest_timestamp", pa.timestamp("us", tz="UTC")),
            ("min", pa.float64()),
            ("max", pa.float64()),
            ("count", pa.int64()),
        ]
    )


def schema_problem(schema: pa.Schema, expected: pa.Schema) -> str | None:
    """Why a file of ``schema`` cannot be read as ``expected``, or None if it can.

    Columns beyond the expected ones are allowed; types must be of the same family
    (text, integer, float, timestamp), which every reader converts between.
    """
    missing = [field.name for field in expected if field.name not in schema.names]
    if missing:
        return f"it has no column {', '.join(missing)} (its columns: {', '.join(schema.names)})"
    for field in expected:
        actual = schema.field(field.name).type
        if _family(actual) != _family(field.type):
            return f"its column {field.name} holds {actual}, not {field.type}"
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


def problem(storage: Storage, path: str, *, deep: bool = False) -> str | None:
    """Why readers cannot read ``path`` as a file of its kind, or None if they can.

    Reads the footer; with ``deep``, every page too (for a file a reader failed on
    although its footer is sound). Errors of the filesystem itself (a missing file, a
    network failure) are raised, not taken for a bad file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with storage.open_read(path) as file:
            parquet = pq.ParquetFile(file)
            mismatch = schema_problem(parquet.schema_arrow, expected_schema(path))
            if mismatch is not None or not deep:
                return mismatch
            for _ in parquet.iter_batches(columns=expected_schema(path).names):
                pass
    except pa.ArrowException as error:
        return f"it is not a readable Parquet file ({error})"
    except OSError as error:
        if type(error) is not OSError:  # decoding errors are plain OSErrors
            raise
        return f"its data cannot be decoded ({error})"
    return None


def check(storage: Storage, path: str, *, deep: bool = False) -> bool:
    """True if ``path`` reads; else skip it from now on (with a warning) and return False."""
    key = (storage.url, path)
    if key in _SOUND and not deep:
        return True
    reason = problem(storage, path, deep=deep)
    if reason is not None:
        skip(storage, path, reason)
        return False
    if len(_SOUND) > 1_000_000:
        _SOUND.clear()
    _SOUND.add(key)
    return True
