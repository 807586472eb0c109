"""``lakestore``: search, compare and export runs from the shell.

Each command parses its arguments, makes one library call and prints the result through
:mod:`lakestore_cli.output`. Errors print as one line on stderr and exit with status 1;
so does a run, experiment, metric or column that the store does not hold. Runs are named
by their id or its first characters, as the terminal table of ``lakestore runs`` shows them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer
from typer.core import TyperGroup

import lakestore
import lakestore.lifecycle
import lakestore.maintenance
import lakestore.merge
import lakestore.spec
from lakestore.errors import LakestoreError, UnreadableFileWarning
from lakestore.export import FILE_FORMATS

from .output import (
    OutputFormat,
    cell,
    emit,
    key_values,
    overview_columns,
    resolve_format,
    sections_table,
    side_by_side,
)

if TYPE_CHECKING:
    import pyarrow as pa

app = typer.Typer(
    help="Experiment tracking stored as a Parquet lakehouse, queried with DuckDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        envvar="LAKESTORE_URI",
        help="Store location: a folder or a URL such as s3://bucket/prefix "
        "(default: ./lakestore-data).",
        show_default=False,
    ),
]
FormatOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: table in a terminal, csv when piped).",
        show_default=False,
    ),
]
LostAfterOption = Annotated[
    float,
    typer.Option(
        "--lost-after",
        help="Seconds without news after which a writer still running counts as lost; a run "
        "whose running writers are all lost shows as CRASHED.",
        show_default=True,
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write to this file instead, in the format its extension names "
        "(.parquet, .csv, .json/.jsonl, .arrow/.feather).",
    ),
]


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Any error of lakestore, DuckDB or Arrow becomes one line on stderr and exit 1; a
    file that lakestore skips is reported as one line on stderr."""
    import duckdb
    import pyarrow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UnreadableFileWarning)
            shown = warnings.showwarning

            def show(
                message: Warning | str,
                category: type[Warning],
                filename: str,
                lineno: int,
                file: TextIO | None = None,
                line: str | None = None,
            ) -> None:
                if issubclass(category, UnreadableFileWarning):
                    typer.echo(f"warning: {message}", err=True)
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            yield
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
    except BrokenPipeError:  # the reader went away (| head): stop quietly, status 0
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(code=0) from None
    except (LakestoreError, duckdb.Error, pyarrow.ArrowException, OSError) as error:
        # A query runs when its rows are fetched, so DuckDB's errors can arrive here too.
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None


@contextlib.contextmanager
def _store(
    uri: str | None, *, sandbox: bool = False, lost_after: float = lakestore.spec.LOST_AFTER
) -> Iterator[lakestore.Store]:
    """The store opened for reading only, with errors reported as by _errors()."""
    with (
        _errors(),
        lakestore.connect(uri, read_only=True, sandbox=sandbox, lost_after=lost_after) as store,
    ):
        yield store


def _fail(message: str) -> NoReturn:
    """Print ``message`` as one error line on stderr and exit with status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _check_destination(output_format: OutputFormat | None, output: Path | None) -> None:
    """Refuse ``--format`` naming another format than the ``--output`` file's extension:
    the file would not be what its name says, or not what was asked for."""
    if output_format is None or output is None:
        return
    kind = FILE_FORMATS.get(output.suffix.lower())
    if kind is not None and kind != output_format.value:
        _fail(
            f"--format {output_format.value} does not match --output {str(output)!r}, "
            f"which its extension makes a {kind} file; drop --format or change the extension"
        )


def _listing(names: list[str], most: int = 20) -> str:
    """``names`` for an error message, at most ``most`` of them."""
    shown = ", ".join(names[:most]) or "none"
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _runs(
    store: lakestore.Store, given: list[str], view: str = "runs"
) -> list[tuple[str, str | None]]:
    """The id and name of each run in ``given``, named by its id or the first characters
    of it, in that order and each once; exit with an error for an id no run (or more than
    one run) has. ``view`` is ``all_runs`` to find deleted runs too."""
    found: dict[str, dict[str, str | None]] = {}
    for prefix, run_id, run_name in store.sql(
        "SELECT given, run_id, run_name FROM (SELECT unnest($given) AS given) "
        f"JOIN {view} ON given <> '' AND starts_with(run_id, given)",
        {"given": given},
    ).fetchall():
        found.setdefault(prefix, {})[run_id] = run_name
    named: dict[str, str | None] = {}
    for prefix in given:
        matches = found.get(prefix, {})
        if prefix in matches:
            matches = {prefix: matches[prefix]}
        if not matches:
            _fail(f"no run {prefix!r} in store {store.storage.url}")
        if len(matches) > 1:
            _fail(
                f"{prefix!r} starts the ids of {len(matches)} runs "
                f"({_listing(sorted(matches), 3)}); give more of the id"
            )
        named.update(matches)
    return list(named.items())


def _check_metrics(
    store: lakestore.Store, runs: list[tuple[str, str | None]], keys: list[str], history: pa.Table
) -> None:
    """Exit with an error if a run has no history of one of the metric ``keys``."""
    present = set(
        zip(history.column("run_id").to_pylist(), history.column("key").to_pylist(), strict=True)
    )
    for run_id, run_name in runs:
        for key in keys:
            if (run_id, key) not in present:
                logged = store.sql(
                    "SELECT key FROM metric_summary WHERE run_id = ? ORDER BY key", [run_id]
                ).fetchall()
                named = f"{run_id} ({run_name})" if run_name else run_id
                _fail(
                    f"no metric {key!r} in run {named}; its metrics: "
                    + _listing([row[0] for row in logged])
                )


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"lakestore {lakestore.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Experiment tracking stored as a Parquet lakehouse, queried with DuckDB."""


@app.command()
def query(
    sql: Annotated[
        str | None,
        typer.Argument(
            help="The SQL query, over the views runs, params, metrics, metric_summary, tags "
            "and experiments (see docs/QUERYING.md); - to read it from standard input.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-F", help="Read the SQL query from this file.", dir_okay=False),
    ] = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Also keep the query from reading any file outside the store, loading "
            "extensions or changing settings: for SQL written by other people.",
        ),
    ] = False,
    lost_after: LostAfterOption = lakestore.spec.LOST_AFTER,
    store: StoreOption = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Run a SQL query over a store and print the result. Only reads are run: to write
    the result to a file, use --output FILE or lakestore export."""
    sql = _query_text(sql, file)
    _check_destination(output_format, output)
    with _store(store, sandbox=sandbox, lost_after=lost_after) as opened:
        if output is not None:
            opened.export(sql, output)
        else:
            emit(opened.arrow(sql), output_format, None)


def _query_text(sql: str | None, file: Path | None) -> str:
    """The SQL of the argument, of standard input (for -) or of --file; exit with an error
    unless exactly one of them gives it."""
    if sql is not None and file is None:
        return sys.stdin.read() if sql == "-" else sql
    if file is not None and sql is None:
        with _errors():
            text = file.read_text()
        return text
    if sql is None:
        _fail("give the SQL query as an argument, - to read it from standard input, or --file")
    _fail("give the SQL query as an argument or with --file, not both")


class _ListByDefault(TyperGroup):
    """A group of commands whose ``list`` runs when no other is named: ``lakestore runs
    --filter ...`` is ``lakestore runs list --filter ...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


experiments_app = typer.Typer(
    cls=_ListByDefault,
    help="List experiments (the default), or delete, restore or rename one.",
)
app.add_typer(experiments_app, name="experiments")
runs_app = typer.Typer(
    cls=_ListByDefault,
    help="Search runs (the default: lakestore runs \\[list] ...), or delete, restore or "
    "rename them.",
)
app.add_typer(runs_app, name="runs")

DeletedOption = Annotated[
    bool, typer.Option("--deleted", help="Only deleted ones (lakestore gc purges them).")
]
AllOption = Annotated[bool, typer.Option("--all", help="Deleted ones too.")]


def _view_type(deleted: bool, every: bool) -> str:
    if deleted and every:
        _fail("give --deleted or --all, not both")
    return "deleted_only" if deleted else "all" if every else "active_only"


@experiments_app.command("list")
def experiments(
    deleted: DeletedOption = False,
    every: AllOption = False,
    store: StoreOption = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """List the experiments: id, name, number of runs, first and last start, tags."""
    _check_destination(output_format, output)
    stages = {"active_only": "'active'", "deleted_only": "'deleted'", "all": "'active', 'deleted'"}
    with _store(store) as opened:
        emit(
            opened.arrow(
                "SELECT * FROM all_experiments WHERE lifecycle_stage IN "
                f"({stages[_view_type(deleted, every)]}) ORDER BY experiment"
            ),
            output_format,
            output,
        )


ExperimentArgument = Annotated[str, typer.Argument(help="The experiment: its id or its name.")]


@experiments_app.command("delete")
def delete_experiments(
    experiment: Annotated[list[str], typer.Argument(help="The experiments: ids or names.")],
    store: StoreOption = None,
) -> None:
    """Delete experiments with their runs: they leave lists and searches until restored,
    and lakestore gc purges them once deleted for its grace period."""
    with _errors():
        for name in experiment:
            lakestore.delete_experiment(name, store=store)
    typer.echo(f"deleted {len(experiment)} experiment(s)", err=True)


@experiments_app.command("restore")
def restore_experiments(
    experiment: Annotated[list[str], typer.Argument(help="The experiments: ids or names.")],
    store: StoreOption = None,
) -> None:
    """Restore deleted experiments (and their runs) that lakestore gc has not purged."""
    with _errors():
        for name in experiment:
            lakestore.restore_experiment(name, store=store)
    typer.echo(f"restored {len(experiment)} experiment(s)", err=True)


@experiments_app.command("rename")
def rename_experiment(
    experiment: ExperimentArgument,
    new_name: Annotated[str, typer.Argument(help="Its new name.")],
    store: StoreOption = None,
) -> None:
    """Rename an experiment (its id, the name it was created with, stays)."""
    with _errors():
        lakestore.rename_experiment(experiment, new_name, store=store)


@runs_app.command("list")
def runs(
    experiment: Annotated[
        list[str] | None, typer.Argument(help="Only runs of these experiments.")
    ] = None,
    filter_string: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="MLflow-style filter, e.g. \"metrics.acc > 0.9 and params.opt = 'adam'\".",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", help="Sort key, e.g. 'metrics.acc DESC'; repeatable."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many runs.")] = 100,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            "-c",
            help="Only these columns, comma-separated, e.g. run_id,run_name,metrics.acc "
            "(default: the main ones in a terminal, every column in other formats).",
            show_default=False,
        ),
    ] = None,
    deleted: DeletedOption = False,
    every: AllOption = False,
    lost_after: LostAfterOption = lakestore.spec.LOST_AFTER,
    store: StoreOption = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Search runs: one row per run, with its params and latest metrics as columns."""
    _check_destination(output_format, output)
    view_type = _view_type(deleted, every)
    with _store(store, lost_after=lost_after) as opened:
        found = opened.search_runs(
            filter_string,
            order_by=order_by,
            max_results=limit,
            experiments=experiment or None,
            view_type=view_type,
        ).to_arrow_table()
        _check_experiments(opened, experiment or [], found.column("experiment").to_pylist())
        in_terminal = output is None and resolve_format(output_format) is OutputFormat.table
        if columns is not None:
            found = _select(found, [name.strip() for name in columns.split(",")])
        elif in_terminal:
            found = found.select(overview_columns(found))
        emit(found, output_format, output, brief=in_terminal)


RunsArgument = Annotated[
    list[str], typer.Argument(help="Run ids, or their first characters.", show_default=False)
]


@runs_app.command("delete")
def delete_runs(run: RunsArgument, store: StoreOption = None) -> None:
    """Delete runs: they leave lists and searches until restored, and lakestore gc
    purges them once deleted for its grace period."""
    with _store(store) as opened:
        chosen = _runs(opened, run)
    with _errors():
        for run_id, _ in chosen:
            lakestore.delete_run(run_id, store=store)
    typer.echo(f"deleted {len(chosen)} run(s)", err=True)


@runs_app.command("restore")
def restore_runs(run: RunsArgument, store: StoreOption = None) -> None:
    """Restore deleted runs that lakestore gc has not purged."""
    with _store(store) as opened:
        chosen = _runs(opened, run, view="all_runs")
    with _errors():
        for run_id, _ in chosen:
            lakestore.restore_run(run_id, store=store)
    typer.echo(f"restored {len(chosen)} run(s)", err=True)


@runs_app.command("rename")
def rename_run(
    run: Annotated[str, typer.Argument(help="The run id, or its first characters.")],
    name: Annotated[str, typer.Argument(help="Its new name.")],
    store: StoreOption = None,
) -> None:
    """Rename a run (as MLflow does, by setting its mlflow.runName tag)."""
    with _store(store) as opened:
        [(run_id, _)] = _runs(opened, [run], view="all_runs")
    with _errors():
        lakestore.rename_run(run_id, name, store=store)


def _check_experiments(store: lakestore.Store, asked: list[str], found: list[str]) -> None:
    """Exit with an error if an experiment asked for, of which no run was found, does not
    exist: a search that matched none of its runs is not an error."""
    unseen = set(asked) - set(found)
    if unseen:
        known = [row[0] for row in store.sql("SELECT experiment FROM experiments").fetchall()]
        unknown = sorted(unseen - set(known))
        if unknown:
            _fail(
                f"no experiment {unknown[0]!r} in store {store.storage.url}; its experiments: "
                + _listing(sorted(known))
            )


def _select(table: pa.Table, names: list[str]) -> pa.Table:
    """The columns ``names`` of a search's result, or exit with an error naming a column it
    does not have. With no runs found, a search has no param, metric or tag columns to
    check against: each asked for is then given, empty."""
    import pyarrow as pa

    names = list(dict.fromkeys(names))
    missing = [name for name in names if name not in table.column_names]
    keys = ("params.", "metrics.", "tags.")
    wrong = [name for name in missing if table.num_rows or not name.startswith(keys)]
    if wrong:
        _fail(
            f"no column {wrong[0]!r} in the runs found; their columns: "
            + _listing(table.column_names, most=1000)
        )
    for name in missing:
        table = table.append_column(name, pa.nulls(0, pa.string()))
    return table.select(names)


@app.command()
def describe(
    run_id: Annotated[str, typer.Argument(help="The run: its id, or the first characters of it.")],
    lost_after: LostAfterOption = lakestore.spec.LOST_AFTER,
    store: StoreOption = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Show one run in full: its attributes, params, tags and latest metrics."""
    _check_destination(output_format, output)
    with _store(store, lost_after=lost_after) as opened:
        [(run_id, _)] = _runs(opened, [run_id])
        sections = _described(opened, run_id)
        if output is None and resolve_format(output_format) is OutputFormat.table:
            for title, pairs in sections.items():
                emit(key_values(pairs), OutputFormat.table, None, title=title)
        else:  # one table that parses back, as compare writes
            emit(sections_table(sections), output_format, output)


def _described(store: lakestore.Store, run_id: str) -> dict[str, list[tuple[str, str]]]:
    """The attributes, params, tags and latest metrics of a run as text, in full."""
    attributes = store.sql("SELECT * EXCLUDE (tags) FROM runs WHERE run_id = ?", [run_id])
    [values] = attributes.fetchall()
    sections = {"attributes": list(zip(attributes.columns, map(cell, values), strict=True))}
    keyed = store.sql(
        "SELECT 'params', key, value, 1 AS position FROM params WHERE run_id = $id "
        "UNION ALL SELECT 'tags', key, value, 2 FROM tags WHERE run_id = $id "
        "UNION ALL SELECT 'metrics', key, CAST(latest AS VARCHAR), 3 FROM metric_summary "
        "WHERE run_id = $id ORDER BY position, key",
        {"id": run_id},
    ).fetchall()
    for section in ("params", "tags", "metrics"):
        sections[section] = [(key, value) for name, key, value, _ in keyed if name == section]
    return sections


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="The runs to put side by side.")],
    differences: Annotated[
        bool, typer.Option("--diff", help="Only keys whose values differ between the runs.")
    ] = False,
    store: StoreOption = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Params and latest metrics of runs side by side: a column per run."""
    _check_destination(output_format, output)
    with _store(store) as opened:
        run_ids = [run_id for run_id, _ in _runs(opened, run_ids)]
        sides = opened.compare(run_ids, only_differences=differences)
        if output is None and resolve_format(output_format) is OutputFormat.table:
            for title, relation in (("params", sides.params), ("metrics", sides.metrics)):
                emit(relation, OutputFormat.table, None, title=title)
        else:  # one table that parses back: a section column, values as text
            emit(side_by_side(sides.params, sides.metrics), output_format, output)


@app.command()
def history(
    run_id: Annotated[str, typer.Argument(help="The run: its id, or the first characters of it.")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric key; repeatable.")
    ] = None,
    points: Annotated[
        int | None,
        typer.Option(
            "--points",
            help="At most this many points a series: both ends and the extremes kept.",
        ),
    ] = None,
    store: StoreOption = None,
    output_format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Print the history of a run's metrics."""
    _check_destination(output_format, output)
    with _store(store) as opened:
        [run] = _runs(opened, [run_id])
        series = opened.metric_history(run[0], metric, points=points).to_arrow_table()
        _check_metrics(opened, [run], metric or [], series)
        emit(series, output_format, output)


@app.command()
def plot(
    run_ids: Annotated[list[str], typer.Argument(help="The runs, each drawn as one line.")],
    metric: Annotated[str, typer.Option("--metric", "-m", help="The metric to draw.")],
    points: Annotated[
        int,
        typer.Option(
            "--points", help="At most this many points a line: both ends and the extremes kept."
        ),
    ] = 500,
    store: StoreOption = None,
) -> None:
    """Draw a metric of runs by step in the terminal, one line a run labelled by its name."""
    from .plot import curves

    with _store(store) as opened:
        chosen = _runs(opened, run_ids)
        ids = [run_id for run_id, _ in chosen]
        series = opened.metric_history(ids, metric, points=points).to_arrow_table()
        _check_metrics(opened, chosen, [metric], series)
        typer.echo(curves(series, chosen, metric, color=sys.stdout.isatty()))


@app.command()
def export(
    view: Annotated[
        str,
        typer.Argument(
            help="What to export: runs, params, metrics, metric_summary, tags, experiments."
        ),
    ],
    output: Annotated[Path, typer.Argument(help="The file; its extension names the format.")],
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", "-e", help="Only these experiments; repeatable."),
    ] = None,
    lost_after: LostAfterOption = lakestore.spec.LOST_AFTER,
    store: StoreOption = None,
) -> None:
    """Export a view of the store to a Parquet, CSV, JSON lines or Arrow file."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with (
        _store(store, lost_after=lost_after) as opened,
        Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar,
    ):
        task = bar.add_task(f"exporting {view}")
        rows = opened.export_view(
            view,
            output,
            experiments=experiment,
            progress=lambda done: bar.update(task, description=f"exporting {view}: {done:,} rows"),
        )
    typer.echo(f"wrote {rows:,} rows to {output}", err=True)


@app.command()
def compact(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            help="Seconds a snapshot must be old before the files it replaced are deleted, "
            "so that queries already running still find them."
        ),
    ] = lakestore.merge.DEFAULT_GRACE,
    store: StoreOption = None,
) -> None:
    """Merge the files waiting in each experiment's inbox now (writers merge on their own
    as files pile up); safe while runs write and queries read."""
    from rich.progress import Progress

    with _errors(), Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("merging", total=None)
        merged = lakestore.compact(
            store,
            experiment=experiment,
            grace=grace,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    typer.echo(f"merged {merged} inbox file(s)", err=True)


import_app = typer.Typer(
    help="Copy runs from another tracker into the store (again: only new runs are added).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


@import_app.command("mlflow")
def import_mlflow(
    source: Annotated[
        str,
        typer.Argument(
            help="The MLflow store: sqlite:///path/mlflow.db, or an mlruns folder "
            "(file: URL or path)."
        ),
    ],
    store: StoreOption = None,
) -> None:
    """Import an MLflow tracking store: experiments, runs with their ids, names, statuses,
    times and parents, params, tags and full metric histories."""
    from rich.progress import Progress

    from lakestore.importing import import_mlflow as run_import

    with _errors(), Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("importing runs", total=None)
        summary = run_import(
            source,
            store=store,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    typer.echo(
        f"imported {summary.imported} run(s), {summary.metric_points} metric point(s); "
        f"{summary.already_there} already in the store, {summary.deleted} deleted in MLflow "
        "left out",
        err=True,
    )


@import_app.command("trackio")
def import_trackio(
    projects: Annotated[
        list[str] | None,
        typer.Argument(
            help="trackio projects: names in $TRACKIO_DIR or paths of their .db files "
            "(default: every project in $TRACKIO_DIR)."
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Import trackio projects, each as the experiment of its name: runs, configs as params,
    every logged number and system metric."""
    import glob

    from rich.progress import Progress

    from lakestore.importing import import_trackio as run_import
    from lakestore.importing import trackio_folder

    if not projects:
        projects = sorted(glob.glob(os.path.join(trackio_folder(), "*.db")))
        if not projects:
            _fail(f"no trackio project in {trackio_folder()} (set $TRACKIO_DIR, or name one)")
    for project in projects:
        with _errors(), Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"importing {project}", total=None)
            summary = run_import(
                project,
                store=store,
                progress=functools.partial(_advance, bar, task),
            )
        typer.echo(
            f"{project}: imported {summary.imported} run(s), {summary.metric_points} metric "
            f"point(s); {summary.already_there} already in the store",
            err=True,
        )


def _advance(bar: Any, task: Any, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)


@app.command()
def gc(
    grace: Annotated[
        float,
        typer.Option(
            help="Seconds a deletion must be old before it is purged, and a snapshot before "
            "the files it replaced are deleted."
        ),
    ] = lakestore.lifecycle.DEFAULT_GC_GRACE,
    store: StoreOption = None,
) -> None:
    """Purge deleted experiments and runs for good: their files, and their rows in merged
    parts. Safe while runs write and queries read."""
    from rich.progress import Progress

    with _errors(), Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("purging", total=None)
        purged = lakestore.gc(
            store,
            grace=grace,
            progress=functools.partial(_advance, bar, task),
        )
    typer.echo(
        f"purged {purged.experiments} experiment(s) and {purged.runs} run(s); "
        f"deleted {purged.files} file(s)",
        err=True,
    )


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="The port to serve on.")] = 5050,
    host: Annotated[
        str,
        typer.Option(
            help="The address to listen on; 0.0.0.0 makes the store readable by anyone who "
            "can reach the port."
        ),
    ] = "127.0.0.1",
    refresh: Annotated[
        float, typer.Option(help="Seconds between an open page's updates of runs and charts.")
    ] = 5.0,
    store: StoreOption = None,
) -> None:
    """Serve a web dashboard of the store (read-only): runs, charts, comparisons, SQL."""
    import lakestore.dashboard

    warning = lakestore.dashboard.exposure_warning(host)
    if warning is not None:
        typer.echo(f"warning: {warning}", err=True)
    with _errors():
        lakestore.dashboard.serve(
            store,
            host=host,
            port=port,
            refresh_seconds=refresh,
            ready=lambda url: typer.echo(f"lakestore ui: {url} (Ctrl-C to stop)", err=True),
        )


@app.command()
def clean(
    older_than: Annotated[
        float,
        typer.Option(help="Only temporary files last written more than this many seconds ago."),
    ] = lakestore.maintenance.DEFAULT_TEMPORARY_AGE,
    store: StoreOption = None,
) -> None:
    """Remove the temporary files that writers killed mid-write left behind."""
    with _errors():
        removed = lakestore.clean(store, older_than=older_than)
    typer.echo(f"removed {removed} temporary file(s)", err=True)


@app.command()
def sync(store: StoreOption = None) -> None:
    """Upload the files a writer left in this machine's spool during a store outage."""
    with _errors():
        uploaded = lakestore.sync(store)
    typer.echo(f"uploaded {uploaded} spooled file(s)", err=True)


@app.command()
def check(store: StoreOption = None) -> None:
    """List the files that lakestore's readers skip and plain Parquet readers fail on:
    files not lakestore's and files that cannot be read. Exit status 1 if there are any."""
    with _errors():
        problems = lakestore.check(store)
    for path, reason in problems:
        typer.echo(f"{path}: {reason}")
    typer.echo(f"{len(problems)} file(s) to move out of the store", err=True)
    if problems:
        raise typer.Exit(code=1)
