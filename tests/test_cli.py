"""The CLI commands over a small store: every command, every output format parsed back."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import lakestore
from lakestore_cli.main import app


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    uri = str(tmp_path_factory.mktemp("cli"))
    ids = []
    for index, (lr, optimizer) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adam")]):
        team = {"adam": "vision", "sgd": "nlp"}[optimizer]
        with lakestore.start_run(
            store=uri, experiment="sweep", run_name=f"r{index}", tags={"team": team}
        ) as run:
            run.log_params({"lr": lr, "optimizer": optimizer})
            for step in range(20):
                run.log_metric("acc", index / 10 + step / 100, step=step)
            run.log_metric("nan", math.nan)
        ids.append(run.run_id)
    with lakestore.start_run(store=uri, experiment="other"):
        pass
    return uri, ids


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_experiments(store) -> None:
    uri, _ = store
    rows = _csv(invoke("experiments", "-s", uri, "-f", "csv"))
    assert [(row["experiment"], row["runs"]) for row in rows] == [("other", "1"), ("sweep", "3")]


def test_runs_filter_order_limit(store) -> None:
    uri, _ = store
    out = invoke(
        "runs", "sweep", "-s", uri, "-f", "csv",
        "--filter", "params.lr > 0.005", "--order-by", "metrics.acc DESC", "--limit", "5",
    )  # fmt: skip
    rows = _csv(out)
    assert [row["run_name"] for row in rows] == ["r1", "r0"]
    assert rows[0]["params.lr"] == "0.01"
    assert float(rows[0]["metrics.acc"]) == pytest.approx(0.29)
    assert len(_csv(invoke("runs", "-s", uri, "-n", "1"))) == 1


def test_compare_and_diff(store) -> None:
    uri, ids = store
    out = invoke("compare", ids[0], ids[2], "--diff", "-s", uri, "-f", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {"section": "params", "key": "lr", ids[0]: "0.1", ids[2]: "0.001"}
    assert {(row["section"], row["key"]) for row in rows} == {("params", "lr"), ("metrics", "acc")}
    piped = _csv(invoke("compare", ids[0], ids[0], ids[1], "--diff", "-s", uri, "-f", "csv"))
    assert [row["key"] for row in piped] == ["lr", "optimizer", "acc"]
    assert list(piped[0]) == ["section", "key", ids[0], ids[1]]
    table = invoke("compare", ids[0], ids[1], "-s", uri, "-f", "table")
    assert "params" in table
    assert "optimizer" in table


def test_history_downsampled(store) -> None:
    uri, ids = store
    rows = _csv(invoke("history", ids[0], "-m", "acc", "--points", "10", "-s", uri))
    # acc grows with the step: each of the 4 slices' lowest and highest are its ends
    assert [int(row["step"]) for row in rows] == [0, 4, 5, 9, 10, 14, 15, 19]


@pytest.mark.parametrize("batch_rows", [7, 1_000_000])
@pytest.mark.parametrize("extension", [".parquet", ".csv", ".jsonl", ".arrow"])
def test_export_every_file_format_reads_back(
    store, tmp_path: Path, extension: str, batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, _ = store
    monkeypatch.setattr("lakestore.export.BATCH_ROWS", batch_rows)  # streamed in batches
    target = tmp_path / f"metrics{extension}"
    result = CliRunner().invoke(app, ["export", "metrics", str(target), "-e", "sweep", "-s", uri])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"wrote 63 rows to {target}\n"
    assert [path.name for path in tmp_path.iterdir()] == [target.name]  # no partial file
    if extension == ".parquet":
        table = pq.read_table(target)
    elif extension == ".csv":
        table = pyarrow.csv.read_csv(target)
    elif extension == ".arrow":
        table = pa.ipc.open_file(target).read_all()
    else:
        table = pa.Table.from_pylist([json.loads(line) for line in target.read_text().splitlines()])
    assert table.num_rows == 3 * 21
    assert set(table.column("key").to_pylist()) == {"acc", "nan"}


@pytest.mark.parametrize("extension", [".csv", ".jsonl"])
def test_export_of_runs_writes_the_tags_map_in_every_batch(
    tmp_path: Path, extension: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "store")
    for index in range(5):
        with lakestore.start_run(store=uri, run_name=f"r{index}", tags={"team": f"t{index}"}):
            pass
    with lakestore.start_run(store=uri, run_name="untagged"):
        pass
    monkeypatch.setattr("lakestore.export.BATCH_ROWS", 2)
    target = tmp_path / f"runs{extension}"
    invoke("export", "runs", str(target), "-s", uri)
    text = target.read_text()
    if extension == ".csv":
        tags = {row["run_name"]: json.loads(row["tags"]) for row in _csv(text)}
    else:
        tags = {row["run_name"]: row["tags"] for row in map(json.loads, text.splitlines())}
    assert tags == {f"r{index}": {"team": f"t{index}"} for index in range(5)} | {"untagged": {}}


def test_query_markdown_and_json(store) -> None:
    uri, _ = store
    markdown = invoke(
        "query",
        "SELECT key, count(*) AS n FROM metrics GROUP BY key ORDER BY key",
        "-s",
        uri,
        "-f",
        "markdown",
    )
    assert markdown.splitlines()[:4] == ["| key | n |", "|---|---|", "| acc | 60 |", "| nan | 3 |"]
    rows = [
        json.loads(line)
        for line in invoke(
            "query", "SELECT value FROM metrics WHERE key = 'nan'", "-s", uri, "-f", "json"
        ).splitlines()
    ]
    assert rows == [{"value": None}] * 3  # JSON has no NaN


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "secrets", "x.csv"], "cannot export 'secrets'"),
        (["export", "runs", "x.xlsx"], "cannot tell the format of 'x.xlsx'"),
        (["runs", "--filter", "metrics.acc >"], "expected a number or a quoted string"),
        (["compare", "nope"], "no run 'nope'"),
        (["history", "nope"], "no run 'nope'"),
        (["history", "nope", "-m", "acc"], "no run 'nope'"),
        (["describe", "nope"], "no run 'nope'"),
        (["plot", "nope", "-m", "acc"], "no run 'nope'"),
        (["runs", "nope"], "no experiment 'nope' in store"),
        (["runs", "sweep", "nope"], "no experiment 'nope' in store"),
        (["runs", "--columns", "run_name,nope"], "no column 'nope' in the runs found"),
        (["query"], "give the SQL query as an argument, - to read it from standard input"),
        (["runs", "-o", "runs.csv", "-f", "json"], "--format json does not match --output"),
        (["query", "SELECT 1", "-o", "x.parquet", "-f", "csv"], "--format csv does not match"),
        (["history", "x", "-o", "h.jsonl", "-f", "table"], "--format table does not match"),
    ],
)
def test_errors_are_one_line(store, args: list[str], message: str) -> None:
    uri, _ = store
    result = CliRunner().invoke(app, [*args, "-s", uri])
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_every_command_has_help() -> None:
    for command in app.registered_commands:
        assert command.callback.__doc__, command.callback.__name__
        result = CliRunner().invoke(app, [command.callback.__name__, "--help"])
        assert result.exit_code == 0


def test_piped_output_is_csv_as_a_real_process(store, tmp_path: Path) -> None:
    uri, _ = store
    done = subprocess.run(
        ["lakestore", "runs", "sweep", "--order-by", "run_name", "-s", uri],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert [row["run_name"] for row in _csv(done.stdout)] == ["r0", "r1", "r2"]


def test_odd_values_print_in_every_format(tmp_path: Path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri, tags={"note": "[/x] [bold]hi[/bold] a|b\\c"}):
        pass
    table = invoke("query", "SELECT tags['note'] AS note FROM runs", "-s", uri, "-f", "table")
    assert "[/x] [bold]hi[/bold]" in table
    runs_csv = _csv(invoke("query", "SELECT run_id, tags FROM runs", "-s", uri, "-f", "csv"))
    assert json.loads(runs_csv[0]["tags"]) == {"note": "[/x] [bold]hi[/bold] a|b\\c"}
    nested = invoke(
        "query", "SELECT [1.0, 'nan'::DOUBLE] AS x, 1 AS a, 2 AS b", "-s", uri, "-f", "json"
    )
    assert json.loads(nested) == {"x": [1.0, None], "a": 1, "b": 2}
    markdown = invoke("query", "SELECT tags['note'] AS note FROM runs", "-s", uri, "-f", "markdown")
    assert markdown.splitlines()[2] == "| [/x] [bold]hi[/bold] a\\|b\\\\c |"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"lakestore {lakestore.__version__}\n"


def test_query_from_standard_input_or_a_file(store, tmp_path: Path) -> None:
    uri, _ = store
    sql = "SELECT count(*) AS n FROM runs"
    result = CliRunner().invoke(app, ["query", "-", "-s", uri, "-f", "csv"], input=sql)
    assert result.exit_code == 0, result.output
    assert _csv(result.stdout) == [{"n": "4"}]
    (tmp_path / "q.sql").write_text(sql + "\n")
    for option in ("--file", "-F"):
        assert _csv(invoke("query", option, str(tmp_path / "q.sql"), "-s", uri)) == [{"n": "4"}]
    both = CliRunner().invoke(app, ["query", sql, "-F", str(tmp_path / "q.sql"), "-s", uri])
    assert (both.exit_code, both.stderr) == (
        1,
        "error: give the SQL query as an argument or with --file, not both\n",
    )
    missing = CliRunner().invoke(app, ["query", "-F", str(tmp_path / "none.sql"), "-s", uri])
    assert missing.exit_code == 1
    assert "none.sql" in missing.stderr


def test_runs_in_a_terminal_shows_the_main_columns_briefly(store) -> None:
    uri, ids = store
    result = CliRunner().invoke(
        app, ["runs", "sweep", "-s", uri, "-f", "table"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[1]
    names = ["run_id", "run_name", "status", "start_time", "duration_s", "metrics.acc"]
    assert [name for name in header.replace("┃", " ").split()] == [
        *names,
        "metrics.nan",
        "params.lr",
        "params.optimizer",
    ]
    assert ids[1][:8] in result.stdout
    assert ids[1] not in result.stdout  # ids cut to 8 characters
    assert " 0.29 " in result.stdout  # 0.1 + 0.19, rounded for display
    assert "0.29000000000000004" not in result.stdout
    narrow = CliRunner().invoke(
        app, ["runs", "sweep", "-s", uri, "-f", "table"], env={"COLUMNS": "60"}
    )
    assert "params.lr" not in narrow.stdout  # only the keys that fit
    assert all(len(line) <= 60 for line in narrow.stdout.splitlines())


@pytest.mark.parametrize("output_format", ["csv", "json", "markdown"])
def test_runs_in_other_formats_keeps_every_column(store, output_format: str) -> None:
    uri, ids = store
    out = invoke("runs", "sweep", "-s", uri, "-f", output_format, "--order-by", "run_name")
    for column in ("host", "user", "end_time", "params.lr", "metrics.nan"):
        assert column in out
    assert ids[0] in out
    assert "0.29000000000000004" in out


def test_runs_columns_picks_columns_in_every_format(store, tmp_path: Path) -> None:
    uri, ids = store
    args = ["runs", "sweep", "-s", uri, "--order-by", "run_name", "-c", "run_id, metrics.acc"]
    assert _csv(invoke(*args, "-f", "csv"))[0] == {"run_id": ids[0], "metrics.acc": "0.19"}
    assert json.loads(invoke(*args, "-f", "json").splitlines()[0]) == {
        "run_id": ids[0], "metrics.acc": 0.19
    }  # fmt: skip
    table = invoke(*args, "-f", "table")
    assert "metrics.acc" in table
    assert "run_name" not in table
    invoke(*args, "-o", str(tmp_path / "runs.parquet"))
    assert pq.read_table(tmp_path / "runs.parquet").column_names == ["run_id", "metrics.acc"]
    unknown = CliRunner().invoke(app, ["runs", "-s", uri, "--columns", "run_id,acc"])
    assert unknown.exit_code == 1
    assert "no column 'acc' in the runs found; their columns: experiment, run_id," in (
        unknown.stderr
    )
    assert "metrics.acc" in unknown.stderr
    none_found = ["runs", "-s", uri, "--filter", "metrics.acc > 5", "-f", "csv"]
    assert invoke(*none_found, "-c", "run_id,metrics.acc") == '"run_id","metrics.acc"\n'
    typo = CliRunner().invoke(app, [*none_found, "-c", "run_nme"])
    assert (typo.exit_code, "no column 'run_nme'" in typo.stderr) == (1, True)


def test_a_search_that_finds_nothing_in_an_experiment_is_not_an_error(store) -> None:
    uri, _ = store
    out = invoke("runs", "sweep", "other", "--filter", "metrics.acc > 5", "-s", uri, "-f", "csv")
    assert len(out.splitlines()) == 1  # the header


def test_describe_shows_a_run_in_full(store) -> None:
    uri, ids = store
    rows = _csv(invoke("describe", ids[1], "-s", uri, "-f", "csv"))
    described = {(row["section"], row["key"]): row["value"] for row in rows}
    assert described[("attributes", "run_id")] == ids[1]
    assert described[("attributes", "run_name")] == "r1"
    assert described[("attributes", "status")] == "FINISHED"
    assert described[("params", "lr")] == "0.01"
    assert described[("params", "optimizer")] == "sgd"
    assert described[("tags", "team")] == "nlp"
    assert float(described[("metrics", "acc")]) == 0.1 + 0.19  # in full
    assert described[("metrics", "nan")] == "nan"
    assert [row["section"] for row in rows] == sorted(
        (row["section"] for row in rows), key=["attributes", "params", "tags", "metrics"].index
    )
    table = invoke("describe", ids[1][:10], "-s", uri, "-f", "table")  # the start of an id
    for shown in ("attributes", "params", "tags", "metrics", ids[1], "sgd", "nlp"):
        assert shown in table


def test_runs_are_named_by_the_start_of_their_id(tmp_path: Path) -> None:
    uri = str(tmp_path)
    ids = []
    for index in range(17):  # two of them start with the same hex digit
        with lakestore.start_run(store=uri, run_name=f"r{index}") as run:
            run.log_metric("loss", index)
        ids.append(run.run_id)
    first = [run_id[0] for run_id in ids]
    shared = next(digit for digit in first if first.count(digit) > 1)
    result = CliRunner().invoke(app, ["history", shared, "-s", uri])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: '{shared}' starts the ids of ")
    assert result.stderr.endswith("; give more of the id\n")
    short = [run_id[:8] for run_id in ids[:2]]
    side_by_side = _csv(invoke("compare", *short, "-s", uri, "-f", "csv"))
    assert list(side_by_side[0]) == ["section", "key", *ids[:2]]
    assert float(_csv(invoke("history", short[1], "-s", uri))[0]["value"]) == 1


def test_history_of_a_metric_the_run_does_not_have(store) -> None:
    uri, ids = store
    for command in (["history", ids[0], "-m", "acc", "-m", "los"], ["plot", ids[0], "-m", "los"]):
        result = CliRunner().invoke(app, [*command, "-s", uri])
        assert result.exit_code == 1
        assert (
            result.stderr == f"error: no metric 'los' in run {ids[0]} (r0); its metrics: acc, nan\n"
        )


def test_a_format_that_matches_the_output_file_is_fine(store, tmp_path: Path) -> None:
    uri, _ = store
    invoke("runs", "-s", uri, "-o", str(tmp_path / "runs.jsonl"), "-f", "json")
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 4


def test_plot_draws_one_labelled_line_a_run(store) -> None:
    uri, ids = store
    done = subprocess.run(
        ["lakestore", "plot", ids[0], ids[1][:8], "--metric", "acc", "--points", "5", "-s", uri],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].strip() == "acc by step"
    assert lines[1].startswith("┌")  # the frame
    assert lines[-3].startswith("└")
    assert "15" in lines[-2].split()  # steps along the x axis
    assert lines[-1].split() == ["++", "r0", "xx", "r1"]  # a character a run: no colours
    assert "\x1b[" not in done.stdout


def test_plot_labels_runs_of_the_same_name_by_their_id() -> None:
    from lakestore_cli.plot import labels

    runs = [("a" * 32, "r"), ("b" * 32, "r"), ("c" * 32, None), ("d" * 32, "s")]
    assert labels(runs) == ["r (aaaaaaaa)", "r (bbbbbbbb)", "cccccccc", "s"]


@pytest.mark.parametrize("output_format", ["table", "csv", "json", "markdown"])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, output_format: str) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri):
        pass
    reader = subprocess.Popen(
        ["lakestore", "query", "SELECT range, repeat('x', 60) FROM range(100000)",
         "-f", output_format, "-s", uri],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert reader.stdout is not None
    assert reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # as head does once it has its lines
    assert reader.wait(timeout=120) == 0
    assert reader.stderr.read() == b""
