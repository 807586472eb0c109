"""How the CLI prints a query result in a terminal or a pipe; files are lakestore.export's job."""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakestore.export import (
    column_values,
    flat,
    json_value,
    rows,
    write_file,
    write_json_lines,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

MAX_TABLE_ROWS = 1000
"""Rows a terminal table shows at most; files and piped formats get every row."""

SHORT_ID = 8
"""Characters of a run id a brief table shows: enough to tell runs apart and to type."""

OVERVIEW_KEYS = 3
"""Metrics, and params, that the terminal table of ``lakestore runs`` shows by default."""


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


def key_values(pairs: list[tuple[str, str]]) -> pa.Table:
    """A two-column table, ``key`` and ``value``, of text ``pairs``."""
    import pyarrow as pa

    return pa.table(
        [
            pa.array([key for key, _ in pairs], pa.string()),
            pa.array([value for _, value in pairs], pa.string()),
        ],
        names=["key", "value"],
    )


def sections_table(sections: dict[str, list[tuple[str, str]]]) -> pa.Table:
    """Keyed sections as one table that parses back: ``section``, ``key``, ``value``."""
    import pyarrow as pa

    parts = [
        key_values(pairs).add_column(0, "section", pa.array([title] * len(pairs), pa.string()))
        for title, pairs in sections.items()
    ]
    return pa.concat_tables(parts)


def overview_columns(table: pa.Table, width: int | None = None) -> list[str]:
    """The columns of a ``search_runs`` result worth a terminal's ``width``: the run's id,
    experiment (when there are several), name, status, start and duration, then as many of
    its first few metrics, then params, as fit. Every column is a ``--columns`` away."""
    from rich.console import Console

    width = Console().width if width is None else width
    shown = table.slice(0, MAX_TABLE_ROWS)

    def needed(name: str) -> int:  # the widest cell or header, with padding and a border
        texts = map(_brief_cell(name), column_values(shown.column(name)))
        return 3 + max(len(name), *(len(text) for text in texts))

    names = ["run_id", "experiment", "run_name", "status", "start_time", "duration_s"]
    if len(set(shown.column("experiment").to_pylist())) < 2:
        names.remove("experiment")
    names = [name for name in names if name in table.column_names]
    used = 1 + sum(map(needed, names))
    for prefix in ("metrics.", "params."):
        keys = [name for name in table.column_names if name.startswith(prefix)]
        for name in keys[:OVERVIEW_KEYS]:
            if used + needed(name) > width:
                break
            names.append(name)
            used += needed(name)
    return names


def emit(
    relation: duckdb.DuckDBPyRelation | pa.Table | None,
    output_format: OutputFormat | None,
    output: Path | None,
    *,
    title: str | None = None,
    brief: bool = False,
) -> None:
    """Print ``relation`` in ``output_format``, or write it to ``output``.

    Without a format, a terminal gets a table and a pipe gets CSV. With ``brief``, a
    table shows run ids by their first characters, floats to 4 significant digits and
    times to the minute, in local time; other formats always show every value in full.
    """
    if relation is None:  # a statement with no result
        return
    if output is not None:
        write_file(relation, output)
        return
    table = relation if hasattr(relation, "num_rows") else relation.to_arrow_table()
    output_format = resolve_format(output_format)
    if output_format is OutputFormat.table:
        _print_table(table, title, brief)
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


def cell(value: Any) -> str:
    """``value`` as text, in full: the text of a table's or markdown's cell."""
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ")
    if isinstance(value, (dict, list)):
        return json.dumps(json_value(value), ensure_ascii=False)
    return str(value)


def _brief_float(value: float) -> str:
    """``value`` to 4 significant digits; large numbers keep every digit left of the
    point rather than turn into powers of ten."""
    if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _brief_cell(name: str) -> Callable[[Any], str]:
    """How a brief table shows a value of column ``name``."""

    def show(value: Any) -> str:
        if isinstance(value, float):
            return _brief_float(value)
        if hasattr(value, "astimezone"):
            return value.astimezone().strftime("%Y-%m-%d %H:%M")
        if name in ("run_id", "parent_run_id") and isinstance(value, str):
            return value[:SHORT_ID]
        return cell(value)

    return show


def _markdown(table: pa.Table) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(escape(name) for name in table.column_names) + " |",
        "|" + "---|" * table.num_columns,
    ]
    for row in rows(table):
        lines.append("| " + " | ".join(escape(cell(value)) for value in row) + " |")
    return "\n".join(lines)


def _print_table(table: pa.Table, title: str | None, brief: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            # Rich would exit with status 1; the command stops quietly instead.
            raise BrokenPipeError

    shown = Table(title=title, show_lines=False)
    for name in table.column_names:  # Text: data is never read as markup
        # A brief table keeps a row a line, a full one shows every character.
        shown.add_column(Text(name), overflow="ellipsis" if brief else "fold", no_wrap=brief)
    texts = [_brief_cell(name) if brief else cell for name in table.column_names]
    for row in rows(table.slice(0, MAX_TABLE_ROWS)):
        shown.add_row(*(Text(text(value)) for text, value in zip(texts, row, strict=True)))
    console = PipeConsole()
    console.print(shown)
    if table.num_rows > MAX_TABLE_ROWS:
        console.print(
            f"{table.num_rows - MAX_TABLE_ROWS} more rows not shown; "
            "use --format csv or --output FILE for all of them"
        )
