"""How the CLI prints or writes a query result: the one place that knows output formats."""

from __future__ import annotations

import enum
import json
import math
import sys
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


def emit(
    relation: duckdb.DuckDBPyRelation | None,
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
    table = relation.to_arrow_table()
    if output is not None:
        _write_file(table, output)
        return
    if output_format is None:
        output_format = OutputFormat.table if sys.stdout.isatty() else OutputFormat.csv
    if output_format is OutputFormat.table:
        _print_table(table, title)
    elif output_format is OutputFormat.markdown:
        if title:
            sys.stdout.write(f"## {title}\n\n")
        sys.stdout.write(_markdown(table) + "\n")
    elif output_format is OutputFormat.csv:
        import pyarrow.csv

        pyarrow.csv.write_csv(table, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        _write_json_lines(table, sys.stdout)


def _write_file(table: pa.Table, output: Path) -> None:
    kind = _FILE_FORMATS.get(output.suffix.lower())
    if kind is None:
        from lakestore.errors import LakestoreError

        raise LakestoreError(
            f"cannot tell the format of {str(output)!r} from its extension; use one of "
            + ", ".join(sorted(_FILE_FORMATS))
        )
    if kind == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, output, compression="zstd")
    elif kind == "csv":
        import pyarrow.csv

        pyarrow.csv.write_csv(table, output)
    elif kind == "arrow":
        import pyarrow as pa

        with pa.OSFile(str(output), "wb") as sink, pa.ipc.new_file(sink, table.schema) as file:
            file.write_table(table)
    else:
        with output.open("w", encoding="utf-8") as file:
            _write_json_lines(table, file)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _write_json_lines(table: pa.Table, file: Any) -> None:
    for row in table.to_pylist():
        record = {key: _json_value(value) for key, value in row.items()}
        file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _markdown(table: pa.Table) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(escape(name) for name in table.column_names) + " |",
        "|" + "---|" * table.num_columns,
    ]
    for row in table.to_pylist():
        lines.append("| " + " | ".join(escape(_cell(value)) for value in row.values()) + " |")
    return "\n".join(lines)


def _print_table(table: pa.Table, title: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title, show_lines=False)
    for name in table.column_names:
        shown.add_column(name, overflow="fold")
    for row in table.slice(0, MAX_TABLE_ROWS).to_pylist():
        shown.add_row(*(_cell(value) for value in row.values()))
    console = Console()
    console.print(shown)
    if table.num_rows > MAX_TABLE_ROWS:
        console.print(
            f"{table.num_rows - MAX_TABLE_ROWS} more rows not shown; "
            "use --format csv or --output FILE for all of them"
        )
