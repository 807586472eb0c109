"""The lakestore dataset format: table names, Arrow schemas, paths and name rules.

This module is the code form of docs/FORMAT.md; the two change together. It imports only
the standard library so that ``import lakestore`` stays cheap; the Arrow schemas are built
on first use by :func:`arrow_schema`.
"""

from __future__ import annotations

import array
import json
import math
import numbers
import re
import urllib.parse
import uuid
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from lakestore.errors import FormatVersionError, InvalidNameError, InvalidValueError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

    from lakestore.storage import Storage

FORMAT_VERSION = 2
"""The version this lakestore writes and the only one it reads."""

MARKER_FILE = "_lakestore.json"
"""The file at the store root that records the format version."""

TABLES = ("runs", "params", "metrics", "tags")
"""The tables of a store. Each is a set of Parquet files per experiment (docs/FORMAT.md)."""

SUMMARIES = "metric_summaries"
"""The derived table that summarises each run's metrics, written by merges."""

MAX_KEY_LENGTH = 250
"""Longest metric, param or tag key, in characters (as in MLflow)."""

MAX_VALUE_LENGTH = 4 * 1024 * 1024
"""Longest param value, tag value or run name, in characters."""

MAX_PARTITION_BYTES = 240
"""Longest escaped experiment name in bytes, so that its folder name fits in the 255-byte
name limit of common filesystems."""

RUN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")
"""The statuses a row of the runs table records."""

HEARTBEAT_INTERVAL = 60.0
"""Seconds between the ``RUNNING`` rows that an open writer repeats in the runs table, so
that readers can tell a live writer from a lost one."""

LOST_AFTER = 5 * HEARTBEAT_INTERVAL
"""Seconds after its latest row at which readers take a writer whose latest row is
``RUNNING`` for lost: five heartbeats missed, time enough for a slow store or a pause."""

EXPERIMENT_RUN = "_experiment"
"""The run id under which an experiment's own tags are stored in the ``tags`` table (its
name, whether it is deleted, the tags set with set_experiment_tag): no run has this id."""

DELETED_TAG = "lakestore.deleted"
"""The tag that marks a run, or an experiment (on EXPERIMENT_RUN), deleted: its value is
``true``; restoring deletes the tag. Its timestamp is the time of the deletion."""

RUN_NAME_TAG = "mlflow.runName"
"""The tag that renames a run, as in MLflow: when set, it is the run's name."""

EXPERIMENT_NAME_TAG = "lakestore.name"
"""The tag, on EXPERIMENT_RUN, that renames an experiment: when set, it is the name lists
and searches show; the experiment's id stays the name it was created with."""

RESERVED_TAG_PREFIX = "lakestore."
"""Tags whose keys start with this are lakestore's own: the views show them as columns."""

LIFECYCLE_STAGES = ("active", "deleted")
"""The lifecycle stages of runs and experiments, as MLflow names them."""

_UNRESERVED_ASCII = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@cache
def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of the columns stored in each file of ``table``.

    The partition columns ``experiment`` and ``run`` are not stored in the files: readers
    take them from the directory names, as strings.
    """
    import pyarrow as pa

    timestamp = pa.timestamp("us", tz="UTC")
    fields = {
        "runs": [
            pa.field("event_time", timestamp, nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("run_name", pa.string()),
            pa.field("parent_run_id", pa.string()),
            pa.field("user", pa.string()),
            pa.field("host", pa.string()),
            pa.field("start_time", timestamp),
            pa.field("end_time", timestamp),
            pa.field("writer_id", pa.string(), nullable=False),
        ],
        "params": [
            pa.field("key", pa.string(), nullable=False),
            pa.field("value", pa.string(), nullable=False),
            pa.field("value_float", pa.float64()),
            pa.field("timestamp", timestamp, nullable=False),
        ],
        "metrics": [
            pa.field("key", pa.string(), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
            pa.field("step", pa.int64(), nullable=False),
            pa.field("timestamp", timestamp, nullable=False),
        ],
        "tags": [
            pa.field("key", pa.string(), nullable=False),
            pa.field("value", pa.string()),
            pa.field("timestamp", timestamp, nullable=False),
        ],
    }
    return pa.schema(fields[table])


WRITER_COLUMN = "writer_id"
"""The column naming the writer (process) that logged each row."""

SEQUENCE_COLUMN = "seq"
"""The column holding the sequence number of the inbox file a row was first written in."""


@cache
def file_schema(table: str) -> pa.Schema:
    """The Arrow schema of every data file of ``table``, inbox file or part alike.

    The experiment and the run come first, then the table's own columns, then the writer
    of each row and the sequence number of the inbox file it was logged in.
    """
    import pyarrow as pa

    own = [field for field in arrow_schema(table) if field.name != WRITER_COLUMN]
    return pa.schema(
        [
            pa.field("experiment", pa.string(), nullable=False),
            pa.field("run", pa.string(), nullable=False),
            *own,
            pa.field(WRITER_COLUMN, pa.string(), nullable=False),
            pa.field(SEQUENCE_COLUMN, pa.int64(), nullable=False),
        ]
    )


@cache
def summary_schema() -> pa.Schema:
    """The Arrow schema of a metric summary file: one row per experiment, run and key."""
    import pyarrow as pa

    timestamp = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("experiment", pa.string(), nullable=False),
            pa.field("run", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("latest", pa.float64()),
            pa.field("latest_step", pa.int64()),
            pa.field("latest_timestamp", timestamp),
            pa.field("min", pa.float64()),
            pa.field("max", pa.float64()),
            pa.field("count", pa.int64()),
        ]
    )


@cache
def snapshot_schema() -> pa.Schema:
    """The Arrow schema of a snapshot: a row per live part, and a row per writer saying
    through which sequence number its inbox files are merged."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("experiment", pa.string(), nullable=False),
            pa.field("generation", pa.int64(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("table", pa.string()),
            pa.field("path", pa.string()),
            pa.field("rows", pa.int64()),
            pa.field(WRITER_COLUMN, pa.string()),
            pa.field("merged_through", pa.int64()),
        ]
    )


def schema_of(table: str) -> pa.Schema:
    """The schema of the files of ``table``: a data table, ``metric_summaries`` or
    ``snapshots``."""
    if table == SUMMARIES:
        return summary_schema()
    if table == "snapshots":
        return snapshot_schema()
    return file_schema(table)


def escape_name(value: str) -> str:
    """The folder-name form of an experiment name.

    ASCII letters, digits and ``-_~`` and printable non-ASCII characters stay as they are;
    every other character (``.`` and ``/`` included) is percent-encoded as UTF-8 bytes, so
    the result is never ``.`` or ``..`` and never contains ``/``: it cannot point outside
    the store. Readers never need to decode it: every file holds its experiment's name.
    """
    out = []
    for char in value:
        if char in _UNRESERVED_ASCII or (ord(char) > 127 and char.isprintable()):
            out.append(char)
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
    return "".join(out)


def unescape_name(text: str) -> str:
    """The experiment name a folder name stands for (the inverse of escaping)."""
    return urllib.parse.unquote(text, errors="strict")


def new_id() -> str:
    """A fresh random identifier for a run or a writer (32 hex digits)."""
    return uuid.uuid4().hex


_NAME_WORDS = (
    "amber bold brisk calm clever crisp daring eager fair fleet gentle glad grand hardy "
    "keen lively lucid merry mellow nimble noble placid proud quick quiet rapid serene "
    "sharp shy silent sleek steady stout swift tidy vivid warm wise witty zesty",
    "badger bison crane dingo eagle egret falcon ferret gecko heron ibex jackal koala "
    "lemur lynx marten moose newt ocelot orca otter panda puffin quail raven robin "
    "salmon seal shrew sloth stork tapir toucan trout viper walrus wombat yak zebra",
)


def new_run_name() -> str:
    """A readable name for a run started without one, as MLflow gives (``swift-heron-42``)."""
    import random

    adjectives, animals = (words.split() for words in _NAME_WORDS)
    return f"{random.choice(adjectives)}-{random.choice(animals)}-{random.randrange(1000)}"


def check_experiment_name(name: object) -> str:
    """Return ``name`` if it can name an experiment, else raise InvalidNameError."""
    if not isinstance(name, str):
        raise InvalidNameError(f"experiment name must be a string, got {name!r}")
    if name == "":
        raise InvalidNameError("experiment name must not be empty")
    _check_encodable(name, "experiment name", InvalidNameError)
    if "\x00" in name:
        raise InvalidNameError(f"experiment name {name!r} contains a NUL character")
    size = len(escape_name(name).encode("utf-8"))
    if size > MAX_PARTITION_BYTES:
        raise InvalidNameError(
            f"experiment name {name[:40]!r}... is too long: it takes {size} bytes as a "
            f"directory name, the limit is {MAX_PARTITION_BYTES}; choose a shorter name"
        )
    return name


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it has the form of a run id, else raise InvalidNameError."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidNameError(
            f"run id {run_id!r} is not valid: run ids are 1 to 64 letters, digits, '-' or '_'"
        )
    if run_id == EXPERIMENT_RUN:
        raise InvalidNameError(
            f"run id {run_id!r} is reserved: it holds the tags of the experiment itself"
        )
    return run_id


def check_key(key: object, kind: str) -> str:
    """Return ``key`` if it can name a metric, param or tag (``kind``), else raise."""
    if not isinstance(key, str):
        raise InvalidNameError(f"{kind} key must be a string, got {key!r}")
    if key == "":
        raise InvalidNameError(f"{kind} key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidNameError(
            f"{kind} key {key[:40]!r}... is {len(key)} characters long; "
            f"the limit is {MAX_KEY_LENGTH}"
        )
    if "\x00" in key:
        raise InvalidNameError(f"{kind} key {key!r} contains a NUL character")
    _check_encodable(key, f"{kind} key", InvalidNameError)
    return key


def check_text(text: object, what: str) -> str:
    """Return ``text`` if it can be stored as a value or a run name, else raise."""
    if not isinstance(text, str):
        raise InvalidValueError(f"{what} must be a string, got {text!r}")
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidValueError(
            f"{what} is {len(text)} characters long; the limit is {MAX_VALUE_LENGTH}"
        )
    _check_encodable(text, what, InvalidValueError)
    return text


def _check_encodable(text: str, what: str, error: type[Exception]) -> None:
    """Parquet stores UTF-8: reject text with lone surrogates before it is buffered."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as bad:
        raise error(
            f"{what} {text[:40]!r} is not valid Unicode: {bad.reason} at position {bad.start}"
        ) from None


def param_text_and_float(key: str, value: object) -> tuple[str, float | None]:
    """The stored forms of a param value: its text, and its number if it is numeric.

    Integers and floats (Python's, NumPy's, any ``numbers.Real``; not booleans) are
    numeric, and so is text written as a decimal number (``"0.01"``, ``"1e-3"``), which is
    how parsed command lines arrive. Any other value is stored as ``str(value)``.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        number = float(value)
        text = repr(number) if isinstance(value, float) else str(value)
        return check_text(text, f"param {key!r} value"), number
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        try:
            text = str(int(value))
        except ValueError:  # more digits than Python prints
            raise InvalidValueError(
                f"param {key!r} value is an integer too large to store"
            ) from None
        try:
            integral: float | None = float(int(value))
        except OverflowError:
            integral = None
        return check_text(text, f"param {key!r} value"), integral
    if type(value).__name__ == "bool_":  # NumPy's bool is not an int subclass
        return str(bool(value)), None  # type: ignore[arg-type]
    text = check_text(value if isinstance(value, str) else str(value), f"param {key!r} value")
    if not _NUMBER_TEXT.fullmatch(text):
        return text, None
    number = float(text)
    return text, number if math.isfinite(number) else None


def read_format_version(storage: Storage) -> int | None:
    """The format version recorded in the store, or None if nothing was written yet.

    Raises FormatVersionError if the store is newer than this lakestore can read.
    """
    data = storage.get(MARKER_FILE)
    if data is None:
        return None
    try:
        version = json.loads(data)["format_version"]
    except (ValueError, KeyError, TypeError) as error:
        raise StoreError(
            f"{storage.path(MARKER_FILE)} is not a lakestore marker ({error}); "
            "is this folder a lakestore store?"
        ) from error
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FormatVersionError(
            f"store {storage.url} has format version {version!r}; this lakestore reads "
            f"version {FORMAT_VERSION}: pip install -U lakestore"
        )
    if version < FORMAT_VERSION:
        raise FormatVersionError(
            f"store {storage.url} has format version {version}, written by an older "
            f"lakestore; this one reads version {FORMAT_VERSION}: log to a new store"
        )
    return version


def ensure_format_marker(storage: Storage) -> None:
    """Record the format version in a new store, or check the one an old store records."""
    marker = json.dumps({"format_version": FORMAT_VERSION}).encode() + b"\n"
    if not storage.put_if_absent(MARKER_FILE, marker):
        read_format_version(storage)


def arrow_column(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """``values`` (str, float, int or int microseconds, or None) as an Arrow array of
    ``arrow_type``.

    Built from buffers, because ``pa.array`` on Python objects imports pandas whenever it is
    installed: about 200 ms on a run's first flush in a typical ML environment.
    """
    import pyarrow as pa

    validity = _validity(values)
    if pa.types.is_string(arrow_type):
        encoded = [b"" if value is None else value.encode("utf-8") for value in values]
        offsets = array.array("i", [0])
        end = 0
        for item in encoded:
            end += len(item)
            offsets.append(end)
        if end >= 2**31:  # past 32-bit offsets: let pyarrow choose
            return pa.array(values, type=arrow_type)
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(arrow_type, len(values), buffers)
    if pa.types.is_floating(arrow_type):
        numbers = array.array("d", [0.0 if value is None else value for value in values])
    elif pa.types.is_timestamp(arrow_type) or arrow_type == pa.int64():
        numbers = array.array("q", [0 if value is None else value for value in values])
    else:
        return pa.array(values, type=arrow_type)
    return pa.Array.from_buffers(arrow_type, len(values), [validity, pa.py_buffer(numbers)])


def _validity(values: Sequence[Any]) -> pa.Buffer | None:
    """Arrow's validity bitmap of ``values`` (a bit set for each non-None), or None if none
    is None."""
    import pyarrow as pa

    if all(value is not None for value in values):
        return None
    bits = bytearray((len(values) + 7) // 8)
    for index, value in enumerate(values):
        if value is not None:
            bits[index >> 3] |= 1 << (index & 7)
    return pa.py_buffer(bytes(bits))
