"""Search, compare and history over a small sweep, with MLflow's filter grammar."""

from __future__ import annotations

import math

import pytest

import lakestore
from lakestore.errors import FilterError, QueryError
from tests.conftest import S3_CREDENTIALS, fresh_store_uri, make_bucket

SWEEP = [
    # run name, params, final acc, tags
    ("a", {"lr": 0.1, "optimizer": "adam", "my param": "x"}, 0.95, {"team": "vision"}),
    ("b", {"lr": 0.01, "optimizer": "sgd"}, 0.80, {"team": "nlp"}),
    ("c", {"lr": "0.001", "optimizer": "adam"}, math.nan, {"team": "vision", "stage": "x"}),
    ("d", {"lr": 0.5}, math.inf, {}),
    ("e", {"optimizer": "o'brien"}, -math.inf, {"team": "visual"}),
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The sweep in a local store, logged once for the module (reads do not change it)."""
    return _log_sweep(str(tmp_path_factory.mktemp("sweep")))


@pytest.fixture(scope="module")
def s3_sweep(s3_endpoint: str):
    """The same sweep on the loopback S3 endpoint."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        yield _log_sweep(f"s3://{make_bucket(s3_endpoint)}/sweep")


def _log_sweep(store_uri: str) -> tuple[str, dict[str, str]]:
    ids = {}
    for name, params, acc, tags in SWEEP:
        with lakestore.start_run(
            store=store_uri, experiment="sweep", run_name=name, tags=tags
        ) as run:
            run.log_params(params)
            run.log_metric("acc", 0.5, step=0)
            run.log_metric("acc", acc, step=10)
            run.log_metric("f1 score", 0.7, step=10)
        ids[name] = run.run_id
    with lakestore.start_run(store=store_uri, experiment="other", run_name="z") as run:
        run.log_metric("acc", 0.99, step=1)
    ids["z"] = run.run_id
    return store_uri, ids


def _names(store: lakestore.Store, filter_string: str, **options) -> list[str]:
    result = store.search_runs(filter_string, **options)
    return [row[0] for row in result.select("run_name").fetchall()]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("", {"a", "b", "c", "d", "e", "z"}),
        ("metrics.acc > 0.9", {"a", "d", "z"}),  # no ordered comparison matches NaN
        ("metrics.acc <= 0.9", {"b", "e"}),
        ("metrics.acc != 0.95", {"b", "c", "d", "e", "z"}),  # NaN differs from every number
        ("metrics.acc < 0", {"e"}),
        ("metrics.acc = 'inf'", FilterError),
        ("metric.acc >= 0.8 AND metric.acc <= 0.95", {"a", "b"}),
        ("params.optimizer = 'adam'", {"a", "c"}),
        ("params.optimizer != 'adam'", {"b", "e"}),
        ("params.lr > 0.005", {"a", "b", "d"}),
        ("params.lr < 0.005", {"c"}),
        ("params.lr = '0.001'", {"c"}),
        ("params.lr IS NULL", {"e", "z"}),
        ("params.optimizer IS NOT NULL", {"a", "b", "c", "e"}),
        ("params.`my param` = 'x'", {"a"}),
        ("params.\"my param\" = 'x'", {"a"}),
        ("metrics.`f1 score` > 0.6", {"a", "b", "c", "d", "e"}),
        ("params.optimizer = 'o''brien'", {"e"}),
        ("tags.team LIKE 'vis%'", {"a", "c", "e"}),
        ("tags.team ILIKE 'VIS%'", {"a", "c", "e"}),
        ("tags.team NOT LIKE 'vis%'", {"b", "d", "z"}),
        ("tags.stage IS NULL AND tags.team = 'vision'", {"a"}),
        ("attributes.status = 'FINISHED' and attributes.run_name IN ('a', 'b')", {"a", "b"}),
        ("run_name NOT IN ('a', 'b')", {"c", "d", "e", "z"}),
        (
            "params.optimizer = 'sgd' OR (tags.team = 'vision' AND metrics.acc > 0.9)",
            {"a", "b"},
        ),
        ("attributes.experiment = 'other'", {"z"}),
        ("attributes.start_time > 0", {"a", "b", "c", "d", "e", "z"}),
        # Injection attempts are values, or do not parse.
        ("params.optimizer = 'adam'' OR 1=1 --'", set()),
        ("params.optimizer = 'x' OR 1=1", FilterError),
        ("params.lr = 1; DROP TABLE runs", FilterError),
        ("metrics.acc > 0.9)", FilterError),
        ("tags.team = 5", FilterError),
        ("attributes.color = 'red'", FilterError),
        ("foo.bar = 1", FilterError),
        ("(" * 60 + "metrics.acc > 0" + ")" * 60, FilterError),
    ],
)
def test_filter_grammar(sweep, filter_string: str, expected) -> None:
    uri, _ = sweep
    with lakestore.connect(uri) as store:
        if expected is FilterError:
            with pytest.raises(
                FilterError, match=r"position|compared|mix|unexpected|nested deeper"
            ):
                store.search_runs(filter_string)
        else:
            assert set(_names(store, filter_string)) == expected


def test_a_bad_filter_points_at_the_bad_token(sweep) -> None:
    uri, _ = sweep
    with lakestore.connect(uri) as store, pytest.raises(FilterError) as caught:
        store.search_runs("metrics.acc > 0.9 and and params.lr = 1")
    assert "at position 22, found 'and'" in str(caught.value)


def test_results_are_ordered_limited_and_wide(sweep) -> None:
    uri, ids = sweep
    with lakestore.connect(uri) as store:
        # As in MLflow: NaN after every number, either way, and missing values last.
        assert _names(store, "", order_by=["metrics.acc DESC"], experiments=["sweep"]) == [
            "d", "a", "b", "e", "c"
        ]  # fmt: skip
        assert _names(store, "", order_by=["metrics.acc"], experiments=["sweep"]) == [
            "e", "b", "a", "d", "c"
        ]  # fmt: skip
        assert _names(store, "", order_by=["metrics.`f1 score` DESC", "metrics.acc"]) == [
            "e", "b", "a", "d", "c", "z"
        ]  # fmt: skip
        assert _names(store, "", order_by=["params.lr ASC"], max_results=3) == ["c", "b", "a"]
        assert _names(store, "", order_by=["attributes.run_name DESC"], max_results=2) == ["z", "e"]
        wide = store.search_runs("run_name = 'a'").to_arrow_table().to_pylist()
    assert len(wide) == 1
    row = wide[0]
    assert row["run_id"] == ids["a"]
    assert row["params.lr"] == "0.1"
    assert row["params.my param"] == "x"
    assert row["metrics.acc"] == 0.95
    assert row["tags.team"] == "vision"
    with lakestore.connect(uri) as store, pytest.raises(FilterError, match="ASC, DESC"):
        store.search_runs("", order_by=["metrics.acc sideways"])


def test_compare_puts_runs_side_by_side(sweep) -> None:
    uri, ids = sweep
    with lakestore.connect(uri) as store:
        both = store.compare([ids["a"], ids["c"]])
        assert both.params.fetchall() == [
            ("lr", "0.1", "0.001"), ("my param", "x", None), ("optimizer", "adam", "adam")
        ]  # fmt: skip
        assert both.params.columns == ["key", ids["a"], ids["c"]]
        metrics = dict((row[0], row[1:]) for row in both.metrics.fetchall())
        assert metrics["acc"][0] == 0.95
        assert math.isnan(metrics["acc"][1])
        differing = store.compare([ids["a"], ids["c"]], only_differences=True)
        assert [row[0] for row in differing.params.fetchall()] == ["lr", "my param"]
        assert [row[0] for row in differing.metrics.fetchall()] == ["acc"]
        with pytest.raises(lakestore.LakestoreError, match="no run 'nope'"):
            store.compare([ids["a"], "nope"])


def test_metric_history_full_and_downsampled(tmp_path) -> None:
    uri = str(tmp_path)
    values = [1.0 / (step + 1) for step in range(1000)]
    values[517], values[250] = 50.0, -50.0  # a spike and a dip a plot must show
    with lakestore.start_run(store=uri) as run:
        run.log_metric_series("loss", values)
        run.log_metric("acc", 1.0)
    with lakestore.connect(uri) as store:
        full = store.metric_history(run.run_id, "loss").select("step").fetchall()
        assert [row[0] for row in full] == list(range(1000))

        def sampled(points: int) -> list[int]:
            history = store.metric_history([run.run_id], ["loss"], points=points)
            return [row[0] for row in history.select("step").fetchall()]

        steps = sampled(10)
        assert len(steps) <= 10
        assert {0, 250, 517, 999} <= set(steps)  # both ends, and the extremes
        assert steps == sorted(steps)
        assert sampled(1) == [999]
        assert sampled(2) == sampled(3) == [0, 999]
        assert sampled(1000) == sampled(5000) == list(range(1000))
        with pytest.raises(QueryError, match="points must be a whole number >= 1, got 0"):
            sampled(0)
        assert {row[0] for row in store.metric_history(run.run_id).select("key").fetchall()} == {
            "acc", "loss"
        }  # fmt: skip


def test_search_compare_and_history_on_s3(s3_sweep) -> None:
    uri, ids = s3_sweep
    with lakestore.connect(uri) as store:
        assert set(_names(store, "params.lr > 0.005 AND tags.team LIKE 'vis%'")) == {"a"}
        assert _names(store, "metrics.acc < 0.9", order_by=["metrics.acc"]) == ["e", "b"]
        assert set(_names(store, "params.optimizer IS NULL")) == {"d", "z"}
        both = store.compare([ids["a"], ids["b"]], only_differences=True)
        assert [row[0] for row in both.params.fetchall()] == ["lr", "my param", "optimizer"]
        history = store.metric_history(ids["a"], "acc").select("step, value").fetchall()
        assert history == [(0, 0.5), (10, 0.95)]


def test_latest_breaks_ties_by_timestamp_then_value(tmp_path) -> None:
    uri = str(tmp_path)
    with lakestore.start_run(store=uri) as run:
        for value in (1.0, 3.0, 2.0):
            run.log_metric("tied", value, step=1, timestamp=1000)
        run.log_metric("later", 5.0, step=5, timestamp=1000)
        run.log_metric("later", 6.0, step=5, timestamp=2000)
        run.log_metric("later", 9.0, step=4, timestamp=3000)
    with lakestore.connect(uri) as store:
        latest = dict(store.sql("SELECT key, latest FROM metric_summary").fetchall())
    assert latest == {"tied": 3.0, "later": 6.0}


@pytest.mark.parametrize("extension", [".parquet", ".csv", ".jsonl", ".arrow"])
def test_export_writes_a_query_result_in_the_format_its_extension_names(
    tmp_path, extension: str
) -> None:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet as pq

    uri = str(tmp_path / "store")
    with lakestore.start_run(store=uri, experiment="e") as run:
        run.log_metric_series("loss", [0.5, math.nan, math.inf], steps=[0, 1, 2])
    target = tmp_path / f"loss{extension}"
    seen: list[int] = []
    with lakestore.connect(uri) as store:
        written = store.export(
            "SELECT step, value FROM metrics WHERE key = ? ORDER BY step", target, ["loss"],
            progress=seen.append,
        )  # fmt: skip
    assert written == 3
    assert seen == [3]
    # pyarrow's CSV reader takes "nan" for null unless told otherwise
    no_nulls = pyarrow.csv.ConvertOptions(null_values=[])
    read = {
        ".parquet": pq.read_table,
        ".csv": lambda path: pyarrow.csv.read_csv(path, convert_options=no_nulls),
        ".jsonl": pyarrow.json.read_json,
        ".arrow": lambda path: pa.ipc.open_file(path).read_all(),
    }[extension]
    values = read(target).column("value").to_pylist()
    if extension == ".jsonl":
        assert values == [0.5, None, None]  # JSON has no NaN or infinity
    else:
        assert repr(values) == repr([0.5, math.nan, math.inf])


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("compacted", [False, True], ids=["run-files", "half-compacted"])
def test_reads_of_some_runs_leave_earlier_relations_reading_every_run(
    backend: str, compacted: bool, request: pytest.FixtureRequest
) -> None:
    # search_runs, compare and metric_history read only their runs' files; a relation
    # made before them is read when fetched, and must still see every run.
    uri = fresh_store_uri(backend, request)
    run_ids = []
    for index in range(4):
        with lakestore.start_run(store=uri) as run:
            run.log_param("lr", index)
            run.log_metric("acc", index / 10)
        run_ids.append(run.run_id)
        if compacted and index == 1:
            lakestore.compact(uri, grace=0)
    with lakestore.connect(uri) as store:
        every_run = store.sql("SELECT count(*) FROM metrics JOIN runs USING (run_id)")
        found = store.search_runs("metrics.acc > 0.05", order_by=["metrics.acc DESC"])
        assert found.select('run_id, "metrics.acc"').fetchall() == [
            (run_ids[3], 0.3),
            (run_ids[2], 0.2),
            (run_ids[1], 0.1),
        ]
        history = store.metric_history([run_ids[0], run_ids[3]], "acc")
        assert history.select("run_id, value").fetchall() == sorted(
            [(run_ids[0], 0.0), (run_ids[3], 0.3)]
        )
        compared = store.compare([run_ids[1], run_ids[2]]).params
        assert compared.fetchall() == [("lr", "1", "2")]
        assert every_run.fetchall() == [(4,)]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_query_listed_before_a_merge_deleted_its_files_reads_the_new_part(
    backend: str, request: pytest.FixtureRequest
) -> None:
    # One public call reads one listing; a merge may delete the inbox files it names
    # before they are read (DuckDB reads local ones; those of S3 are fetched whole).
    uri = fresh_store_uri(backend, request)
    for index in range(3):
        with lakestore.start_run(store=uri) as run:
            run.log_metric("acc", index / 10)
    with lakestore.connect(uri) as store, store._one_listing():
        assert store.sql("SELECT count(*) FROM runs").fetchall() == [(3,)]
        assert lakestore.compact(uri, grace=0) > 0  # deletes every inbox file listed
        assert store.arrow("SELECT count(*) AS n FROM metrics").to_pylist() == [{"n": 3}]


def test_a_filter_of_many_keys_is_answered_and_one_of_too_many_refused(tmp_path) -> None:
    uri = str(tmp_path)
    for shift in range(3):
        with lakestore.start_run(store=uri, run_name=f"run-{shift}") as run:
            run.log_metrics({f"m{key}": key + shift for key in range(200)})
            run.log_params({f"p{key}": key * shift for key in range(50)})
    many = " and ".join(f"metrics.m{key} >= {key + 1}" for key in range(200))
    many += " and " + " and ".join(f"params.p{key} = {key}" for key in range(1, 50))
    with lakestore.connect(uri) as store:
        assert [row[0] for row in store.search_runs(many).select("run_name").fetchall()] == [
            "run-1"
        ]
        too_many = " and ".join(f"metrics.m{key % 200} >= 0" for key in range(300))
        with pytest.raises(FilterError, match="at most 256 params, metrics and tags"):
            store.search_runs(too_many)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_view_of_the_users_reads_the_files_of_the_tables_it_names(
    backend: str, request: pytest.FixtureRequest
) -> None:
    # A query reads only the tables it leads to, through lakestore's views and the user's.
    uri = fresh_store_uri(backend, request)
    with lakestore.start_run(store=uri) as run:
        run.log_metric("acc", 0.5)
    with lakestore.connect(uri) as store:
        store.sql("CREATE VIEW accuracy AS SELECT run_id, value FROM metrics WHERE key = 'acc'")
        store.sql('CREATE VIEW "x AS y" AS SELECT count(*) AS n FROM accuracy')
        assert store.sql("SELECT * FROM accuracy").fetchall() == [(run.run_id, 0.5)]
        assert store.sql('SELECT n FROM "x AS y"').fetchall() == [(1,)]


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """A parent run and its child, whose keys have dots in them, as MLflow users name them."""
    uri = str(tmp_path_factory.mktemp("family"))
    with lakestore.start_run(store=uri, experiment="e", run_name="parent") as parent:
        parent.log_metric("f1.macro", 0.2)
        with lakestore.start_run(store=uri, run_name="child", nested=True) as child:
            child.log_params({"model.name": "resnet50", "lr": 0.1})
            child.set_tags({"env.region": "eu"})
            child.log_metrics({"f1.macro": 0.6, "top.5": 0.9})
    return uri, {"parent": parent.run_id, "child": child.run_id}


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("params.model.name LIKE 'res%'", {"child"}),  # the key: all after the first dot
        ("tags.env.region = 'eu'", {"child"}),
        ("metrics.f1.macro >= 0.5", {"child"}),
        ("metrics.top.5 > 0.5 and params.lr=0.1", {"child"}),
        ("tags.`mlflow.parentRunId` = '{parent}'", {"child"}),  # MLflow's system tags
        ("tags.mlflow.parentRunId IS NULL", {"parent"}),
        ("tags.`mlflow.runName` = 'parent'", {"parent"}),
        ("tags.mlflow.user = '{user}'", {"parent", "child"}),
        ("attributes.created > 0", {"parent", "child"}),  # MLflow's attribute names
        ("attributes.`run name` = 'child'", {"child"}),
        ("attributes.`Run Name` = 'child'", {"child"}),
        ("attributes.user_id = '{user}'", {"parent", "child"}),
        ("metrics.f1.macro. > 0", set()),  # another key, which no run has
    ],
)
def test_keys_and_attributes_as_mlflow_names_them(family, filter_string, expected) -> None:
    import getpass

    uri, ids = family
    filter_string = filter_string.format(parent=ids["parent"], user=getpass.getuser())
    with lakestore.connect(uri) as store:
        assert set(_names(store, filter_string)) == expected


def test_mlflow_attribute_names_order_runs(family) -> None:
    uri, _ = family
    with lakestore.connect(uri) as store:
        assert _names(store, "", order_by=["attributes.created DESC"]) == ["child", "parent"]
        assert _names(store, "", order_by=["tags.mlflow.runName"]) == ["child", "parent"]
        assert _names(store, "", order_by=["metrics.f1.macro DESC"]) == ["child", "parent"]


def test_a_result_read_as_a_stream_does_not_hold_the_store(sweep) -> None:
    uri, ids = sweep
    with lakestore.connect(uri) as store:
        streams = [
            store.search_runs("").arrow(),
            store.compare([ids["a"], ids["b"]]).params.arrow(),
            store.metric_history(ids["a"], "acc").arrow(),
        ]
        assert store.sql("SELECT count(*) FROM runs").fetchall() == [(6,)]
        assert [sum(batch.num_rows for batch in stream) for stream in streams] == [6, 3, 2]
