"""How the CLI prints a query result in a terminal or a pipe; files are lakestore.export's job."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakestore.export import flat, json_value, rows, write_file, write_json_lines

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

        pyarrow.csv.write_csv(flat(table), sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        write_json_lines(table, sys.stdout)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ")
    if isinstance(value, (dict, list)):
        return json.dumps(json_value(value), ensure_ascii=False)
    return str(value)


def _markdown(table: pa.Table) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(escape(name) for name in table.column_names) + " |",
        "|" + "---|" * table.num_columns,
    ]
    for row in rows(table):
        lines.append("| " + " | ".join(escape(_cell(value)) for value in row) + " |")
    return "\n".join(lines)


def _print_table(table: pa.Table, title: str | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            # Rich would exit with status 1; the command stops quietly instead.
            raise BrokenPipeError

    shown = Table(title=title, show_lines=False)
    for name in table.column_names:
        shown.add_column(Text(name), overflow="fold")  # Text: data is never read as markup
    for row in rows(table.slice(0, MAX_TABLE_ROWS)):
        shown.add_row(*(Text(_cell(value)) for value in row))
    console = PipeConsole()
    console.print(shown)
    if table.num_rows > MAX_TABLE_ROWS:
        console.print(
            f"{table.num_rows - MAX_TABLE_ROWS} more rows not shown; "
            "use --format csv or --output FILE for all of them"
        )
