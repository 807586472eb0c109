"""Writing query results to files: Parquet, CSV, JSON lines or Arrow IPC, by extension.

Nested columns (the ``tags`` map) become JSON text in CSV; NaN and infinities, which JSON
cannot hold, become null in JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakestore.errors import LakestoreError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

FILE_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}

BATCH_ROWS = 1_000_000


def write_file(
    relation: duckdb.DuckDBPyRelation | pa.Table,
    output: str | Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``relation`` to ``output`` in the format its extension names; the row count.

    Rows stream through in batches, so an export needs little memory whatever its size;
    ``progress(rows written)`` is called after each batch. The file appears whole or not
    at all: it is written under a temporary name, then renamed.
    """
    import pyarrow as pa

    output = Path(output)
    kind = FILE_FORMATS.get(output.suffix.lower())
    if kind is None:
        raise LakestoreError(
            f"cannot tell the format of {str(output)!r} from its extension; use one of "
            + ", ".join(sorted(FILE_FORMATS))
        )
    if isinstance(relation, pa.Table):
        reader = relation.to_reader(BATCH_ROWS)
    else:
        reader = relation.to_arrow_reader(BATCH_ROWS)
    partial = output.with_name(f".{output.name}.partial")
    written = 0
    try:
        with _batch_writer(kind, partial, reader.schema) as write:
            for batch in reader:
                write(pa.Table.from_batches([batch], reader.schema))
                written += batch.num_rows
                if progress is not None:
                    progress(written)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return written


@contextlib.contextmanager
def _batch_writer(kind: str, path: Path, schema: pa.Schema) -> Iterator[Callable[[pa.Table], None]]:
    """A function that appends a table to the file at ``path``, open for the block."""
    import pyarrow as pa

    if kind == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, schema, compression="zstd") as parquet:
            yield parquet.write_table
    elif kind == "csv":
        import pyarrow.csv

        text_schema = pa.schema(
            [
                pa.field(field.name, pa.string()) if pa.types.is_nested(field.type) else field
                for field in schema
            ]
        )
        with pyarrow.csv.CSVWriter(path, text_schema) as csv:
            yield lambda table: csv.write_table(flat(table))
    elif kind == "arrow":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as ipc:
            yield ipc.write_table
    else:
        with path.open("w", encoding="utf-8") as file:
            yield lambda table: write_json_lines(table, file)


def json_value(value: Any) -> Any:
    """``value`` (from ``to_pylist``) as JSON can hold it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(key): json_value(item) for key, item in value}  # an Arrow map
        return [json_value(item) for item in value]
    return value


def column_values(column: pa.ChunkedArray) -> list[Any]:
    """A column's values as Python objects, maps as dicts (even empty ones)."""
    import pyarrow as pa

    values = column.to_pylist()
    if pa.types.is_map(column.type):
        return [None if value is None else dict(value) for value in values]
    return values


def rows(table: pa.Table) -> list[list[Any]]:
    """Rows as lists (not dicts, which would fold columns of the same name)."""
    columns = [column_values(column) for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def flat(table: pa.Table) -> pa.Table:
    """Nested columns (maps, lists, structs) as JSON text, which CSV can hold."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [
                None if value is None else json.dumps(json_value(value), ensure_ascii=False)
                for value in column_values(table.column(index))
            ]
            table = table.set_column(index, field.name, pa.array(text, pa.string()))
    return table


def write_json_lines(table: pa.Table, file: Any) -> None:
    """Write ``table`` to the text file ``file``, one JSON object a row."""
    names = table.column_names
    for row in rows(table):
        record = {name: json_value(value) for name, value in zip(names, row, strict=True)}
        file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
