"""``lakestore``: query a store from the shell.

Each command parses its arguments, makes one library call and prints the result. Errors
that lakestore raises on purpose print as one line on stderr and exit with status 1.
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Annotated, Any

import typer

import lakestore
from lakestore.errors import LakestoreError

app = typer.Typer(
    help="Experiment tracking stored as a Parquet lakehouse, queried with DuckDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class OutputFormat(enum.StrEnum):
    """How query results are printed."""

    table = "table"
    csv = "csv"
    json = "json"


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        envvar="LAKESTORE_URI",
        help="Store location: a folder or a URL such as s3://bucket/prefix "
        "[default: ./lakestore-data].",
        show_default=False,
    ),
]


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code=1)


@app.callback()
def main() -> None:
    """Experiment tracking stored as a Parquet lakehouse, queried with DuckDB."""


@app.command()
def query(
    sql: Annotated[
        str,
        typer.Argument(
            help="The SQL query, over the views runs, params, metrics, tags and experiments."
        ),
    ],
    store: StoreOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """Run a SQL query over a store and print the result."""
    import duckdb
    import pyarrow

    try:
        with lakestore.connect(store) as opened:
            relation = opened.sql(sql)
            if relation is None:  # a statement with no result
                return
            _print_relation(relation, output_format)
    except (LakestoreError, duckdb.Error, pyarrow.ArrowException) as error:
        # A query runs when its rows are fetched, so DuckDB's errors can arrive here too.
        raise _fail(error) from None


def _print_relation(relation: Any, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.table:
        relation.show(max_rows=1000, max_width=200)
        return
    table = relation.to_arrow_table()
    if output_format is OutputFormat.csv:
        import pyarrow.csv

        pyarrow.csv.write_csv(table, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    for row in table.to_pylist():
        sys.stdout.write(json.dumps(row, default=_json_default, allow_nan=True) + "\n")


def _json_default(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
