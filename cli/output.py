"""How the CLI prints or writes a query result: the one place that knows output formats."""

from __future__ import annotations

import contextlib
import enum
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

MAX_TABLE_ROWS = 1000
"""Rows a terminal table shows at most; files and piped formats get every row."""


class OutputFormat(enum.StrEnum):
    """How results are printed."""

    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


_FILE_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}


def resolve_format(output_format: OutputFormat | None) -> OutputFormat:
    """The format asked for, else a table in a terminal and CSV in a pipe."""
    if output_format is not None:
        return output_format
    return OutputFormat.table if sys.stdout.isatty() else OutputFormat.csv


def side_by_side(params: duckdb.DuckDBPyRelation, metrics: duckdb.DuckDBPyRelation) -> pa.Table:
    """A comparison as one table: a ``section`` column, then key and one text column a run."""
    import pyarrow as pa

    parts = []
    for section, relation in (("params", params), ("metrics", metrics)):
        table = relation.to_arrow_table()
        table = pa.table(
            [pa.array([section] * table.num_rows, pa.string())]
            + [column.cast(pa.string()) for column in table.columns],
            names=["section", *table.column_names],
        )
        parts.append(table)
    return pa.concat_tables(parts)


def emit(
    relation: duckdb.DuckDBPyRelation | pa.Table | None,
    output_format: OutputFormat | None,
    output: Path | None,
    *,
    title: str | None = None,
) -> None:
    """Print ``relation`` in ``output_format``, or write it to ``output``.

    Without a format, a terminal gets a table and a pipe gets CSV.
    """
    if relation is None:  # a statement with no result
        return
    if output is not None:
        write_file(relation, output)
        return
    table = relation if hasattr(relation, "num_rows") else relation.to_arrow_table()
    output_format = resolve_format(output_format)
    if output_format is OutputFormat.table:
        _print_table(table, title)
    elif output_format is OutputFormat.markdown:
        if title:
            sys.stdout.write(f"## {title}\n\n")
        sys.stdout.write(_markdown(table) + "\n")
    elif output_format is OutputFormat.csv:
        import pyarrow.csv

        pyarrow.csv.write_csv(_flat(table), sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        _write_json_lines(table, sys.stdout)


BATCH_ROWS = 1_000_000


def write_file(
    relation: duckdb.DuckDBPyRelation | pa.Table,
    output: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``relation`` to ``output`` in the format its extension names; the row count.

    Rows stream through in batches, so an export needs little memory whatever its size;
    ``progress(rows written)`` is called after each batch. The file appears whole or not
    at all: it is written under a temporary name, then renamed.
    """
    import pyarrow as pa

    kind = _FILE_FORMATS.get(output.suffix.lower())
    if kind is None:
        from lakestore.errors import LakestoreError

        raise LakestoreError(
            f"cannot tell the format of {str(output)!r} from its extension; use one of "
            + ", ".join(sorted(_FILE_FORMATS))
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

        flat = pa.schema(
            [
                pa.field(field.name, pa.string()) if pa.types.is_nested(field.type) else field
                for field in schema
            ]
        )
        with pyarrow.csv.CSVWriter(path, flat) as csv:
            yield lambda table: csv.write_table(_flat(table))
    elif kind == "arrow":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as ipc:
            yield ipc.write_table
    else:
        with path.open("w", encoding="utf-8") as file:
            yield lambda table: _write_json_lines(table, file)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(key): _json_value(item) for key, item in value}  # an Arrow map
        return [_json_value(item) for item in value]
    return value


def _rows(table: pa.Table) -> list[list[Any]]:
    """Rows as lists (not dicts, which would fold columns of the same name)."""
    columns = [column.to_pylist() for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def _flat(table: pa.Table) -> pa.Table:
    """Nested columns (maps, lists, structs) as JSON text, which CSV can hold."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [
                None if value is None else json.dumps(_json_value(value), ensure_ascii=False)
                for value in table.column(index).to_pylist()
            ]
            table = table.set_column(index, field.name, pa.array(text, pa.string()))
    return table


def _write_json_lines(table: pa.Table, file: Any) -> None:
    names = table.column_names
    for row in _rows(table):
        record = {name: _json_value(value) for name, value in zip(names, row, strict=True)}
        file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ")
    if isinstance(value, (dict, list)):
        return json.dumps(_json_value(value), ensure_ascii=False)
    return str(value)


def _markdown(table: pa.Table) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(escape(name) for name in table.column_names) + " |",
        "|" + "---|" * table.num_columns,
    ]
    for row in _rows(table):
        lines.append("| " + " | ".join(escape(_cell(value)) for value in row) + " |")
    return "\n".join(lines)


def _print_table(table: pa.Table, title: str | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    shown = Table(title=title, show_lines=False)
    for name in table.column_names:
        shown.add_column(Text(name), overflow="fold")  # Text: data is never read as markup
    for row in _rows(table.slice(0, MAX_TABLE_ROWS)):
        shown.add_row(*(Text(_cell(value)) for value in row))
    console = Console()
    console.print(shown)
    if table.num_rows > MAX_TABLE_ROWS:
        console.print(
            f"{table.num_rows - MAX_TABLE_ROWS} more rows not shown; "
            "use --format csv or --output FILE for all of them"
        )
