"""Search parity with a real MLflow (its SQLite store): the same runs logged to both, the
same filters and orderings asked of both, the same runs answered, in the same order."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

import lakestore.mlflow as drop_in

mlflow = pytest.importorskip("mlflow", reason="MLflow is a test extra: pip install -e '.[test]'")

# run name: acc (None: not logged), params, tags. NaN, infinities, ties, missing values,
# dotted and quoted keys.
RUNS: list[tuple[str, float | None, dict[str, Any], dict[str, str]]] = [
    ("r00", 0.5, {"lr": "0.1", "model.name": "resnet50"}, {"team": "vision", "env.region": "eu"}),
    ("r01", 0.9, {"lr": "0.01", "model.name": "vit"}, {"team": "nlp", "env.region": "us"}),
    ("r02", 0.9, {"lr": "0.001", "my param": "x"}, {"team": "vision"}),
    ("r03", math.nan, {"lr": "0.1", "model.name": "resnet18"}, {"team": "Vision"}),
    ("r04", math.inf, {"lr": "0.01"}, {"env.region": "eu"}),
    ("r05", -math.inf, {"model.name": "mlp"}, {"team": "nlp"}),
    ("r06", None, {"lr": "0.1", "my param": "y"}, {"team": "vision", "env.region": "eu"}),
    ("r07", 0.1, {"lr": "0.5", "model.name": "resnet50"}, {}),
    ("r08", 1.0, {"lr": "0.01"}, {"team": "o'brien"}),
    ("r09", math.nan, {}, {"team": "nlp", "env.region": "us"}),
    ("r10", 0.0, {"lr": "0.1"}, {"team": "vision"}),
    ("r11", 0.9, {"model.name": "vit"}, {"env.region": "eu"}),
]

FILTERS = [
    "",
    "metrics.acc > 0.5",
    "metrics.acc >= 0.9",
    "metrics.acc < 0.5",
    "metrics.acc <= 1",
    "metrics.acc = 0.9",
    "metrics.acc != 0.9",
    "metrics.loss < 0.3",
    "metrics.loss > 0.3 and metrics.acc > 0",
    "params.lr = '0.1'",
    "params.lr != '0.1'",
    "params.model.name LIKE 'res%'",
    "params.`model.name` = 'vit'",
    "params.`my param` = 'x'",
    "params.\"my param\" != 'x'",
    "tags.team = 'vision'",
    "tags.team ILIKE 'vis%'",
    "tags.team LIKE 'vis%'",
    "tags.env.region = 'eu'",
    "tags.`env.region` != 'eu'",
    "tags.mlflow.runName = 'r03'",
    "attributes.run_name LIKE 'r1%'",
    "attributes.`run name` = 'r02'",
    "attributes.status = 'FINISHED'",
]

EXTENSIONS = [
    # lakestore's deliberate extensions (docs/QUERYING.md): MLflow refuses these filters
    # or reads them otherwise; lakestore's answer, worked out by hand.
    ("tags.team = 'o''brien'", ["r08"]),  # a quote doubled inside a string
    ("tags.team IN ('nlp', 'vision')", ["r00", "r01", "r02", "r05", "r06", "r09", "r10"]),
    ("metrics.acc > 0.95 OR tags.team = 'Vision'", ["r03", "r04", "r08"]),
    ("params.lr > 0.05", ["r00", "r03", "r06", "r07", "r10"]),  # numeric params
    ("metrics.acc IS NULL", ["r06"]),
]

ORDERINGS = [
    ["metrics.acc DESC", "attributes.run_name"],
    ["metrics.acc ASC", "attributes.run_name"],
    ["metrics.loss DESC", "attributes.run_name DESC"],
    ["tags.team", "attributes.run_name"],
    ["tags.team DESC", "attributes.run_name"],
    ["attributes.run_name DESC"],
]


def _log(module: Any) -> None:
    module.set_experiment("parity")
    for index, (name, acc, params, tags) in enumerate(RUNS):
        with module.start_run(run_name=name, tags=tags):
            module.log_params(params)
            if acc is not None:
                module.log_metric("acc", acc, step=1)
            # latest loss: the greatest step, though logged first
            module.log_metric("loss", index / 20, step=5)
            module.log_metric("loss", 1.0, step=2)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding MLflow's store and lakestore's, each with the runs of RUNS."""
    folder: Path = tmp_path_factory.mktemp("parity")
    _point_at(folder)
    _log(mlflow)
    _log(drop_in)
    return folder


def _point_at(folder: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    drop_in.set_tracking_uri(str(folder / "lakestore"))


@pytest.fixture
def stores(logged: Path) -> dict[str, Any]:
    """Both systems, pointed at their stores (each test starts with lakestore's reset)."""
    _point_at(logged)
    return {"mlflow": mlflow, "lakestore": drop_in}


def _clamped(value: float) -> float:
    return math.copysign(sys.float_info.max, value) if math.isinf(value) else value


def _names(module: Any, filter_string: str, order_by: list[str] | None) -> list[str]:
    found = module.search_runs(
        experiment_names=["parity"], filter_string=filter_string, order_by=order_by
    )
    return list(found["tags.mlflow.runName"]) if len(found) else []


@pytest.mark.parametrize("filter_string", FILTERS)
def test_a_filter_finds_the_runs_mlflow_finds(stores: dict[str, Any], filter_string: str) -> None:
    expected = sorted(_names(stores["mlflow"], filter_string, None))
    assert sorted(_names(stores["lakestore"], filter_string, None)) == expected


@pytest.mark.parametrize(("filter_string", "expected"), EXTENSIONS)
def test_lakestores_extensions_answer_as_documented(
    stores: dict[str, Any], filter_string: str, expected: list[str]
) -> None:
    assert sorted(_names(stores["lakestore"], filter_string, None)) == expected


@pytest.mark.parametrize("order_by", ORDERINGS, ids=" ".join)
def test_runs_come_in_mlflows_order(stores: dict[str, Any], order_by: list[str]) -> None:
    expected = _names(stores["mlflow"], "", order_by)
    assert _names(stores["lakestore"], "", order_by) == expected


def test_runs_read_back_as_mlflow_reads_them(stores: dict[str, Any]) -> None:
    for name, *_ in RUNS:
        ours, theirs = (
            module.get_run(
                module.search_runs(
                    experiment_names=["parity"], filter_string=f"attributes.run_name = '{name}'"
                )["run_id"].iloc[0]
            )
            for module in (stores["lakestore"], stores["mlflow"])
        )
        assert ours.data.params == theirs.data.params
        # MLflow's SQL store keeps infinities as the largest float; repr: NaN equals NaN
        clamped = {k: _clamped(v) for k, v in ours.data.metrics.items()}
        assert repr(sorted(clamped.items())) == repr(sorted(theirs.data.metrics.items()))
        user_tags = {k: v for k, v in theirs.data.tags.items() if not k.startswith("mlflow.")}
        assert {k: v for k, v in ours.data.tags.items() if not k.startswith("mlflow.")} == (
            user_tags
        )
        assert ours.data.tags["mlflow.runName"] == theirs.data.tags["mlflow.runName"]
        assert ours.info.status == theirs.info.status


def _printed_under_both(ours: str, folder: Path) -> list[str]:
    """What the script ``ours`` prints, run with lakestore.mlflow on a lakestore store, then
    with MLflow itself (its import line switched) on an SQLite store."""
    import subprocess

    theirs = ours.replace("import lakestore.mlflow as mlflow", "import mlflow", 1)
    assert theirs != ours
    printed = []
    for script, store in ((ours, str(folder / "lakestore")), (theirs, f"sqlite:///{folder}/m.db")):
        done = subprocess.run(
            [sys.executable, "-c", script, store], capture_output=True, text=True, timeout=300,
            cwd=folder,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        printed.append(done.stdout)
    return printed


def test_the_example_script_prints_the_same_under_mlflow_and_lakestore(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "mlflow_script.py"
    printed = _printed_under_both(example.read_text(encoding="utf-8"), tmp_path)
    assert printed[0] == printed[1]
    assert "best run lr=0.1: 20 train/loss points" in printed[0]


LIFECYCLE_SCRIPT = """
import sys

import lakestore.mlflow as mlflow

mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.tracking.MlflowClient()
ALL, DELETED = mlflow.entities.ViewType.ALL, mlflow.entities.ViewType.DELETED_ONLY
experiment = mlflow.create_experiment("sweep", tags={"team": "vision"})
mlflow.set_experiment("sweep")
ids = {}
for name in ("a", "b", "c"):
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_metric("loss", 0.5)
    ids[name] = run.info.run_id


def names(**options):
    found = mlflow.search_runs([experiment], output_format="list", **options)
    return sorted(run.info.run_name for run in found)


mlflow.delete_run(ids["a"])
print("active", names(), "deleted", names(run_view_type=DELETED), "all", names(run_view_type=ALL))
print("stage", client.get_run(ids["a"]).info.lifecycle_stage)
client.restore_run(ids["a"])
client.update_run(ids["b"], name="b2")
print("renamed", names(), client.get_run(ids["b"]).data.tags["mlflow.runName"])
client.set_experiment_tag(experiment, "goal", "sota")
print("tags", sorted(client.get_experiment(experiment).tags.items()))
client.rename_experiment(experiment, "final")
found = client.get_experiment_by_name("final")
print("renamed to", found.name, found.experiment_id == experiment)
print("old name", client.get_experiment_by_name("sweep"))
client.delete_experiment(experiment)
print("experiment", client.get_experiment(experiment).lifecycle_stage)
print("its runs", names(), names(run_view_type=ALL))
print("listed", [e.name for e in mlflow.search_experiments() if e.name != "Default"])
print("all", [e.name for e in mlflow.search_experiments(view_type=ALL) if e.name != "Default"])
try:
    mlflow.set_experiment("final")
except Exception:
    print("a deleted experiment is not set")
client.restore_experiment(experiment)
print("restored", names())
"""


def test_deleting_restoring_and_renaming_answer_as_in_mlflow(tmp_path: Path) -> None:
    printed = _printed_under_both(LIFECYCLE_SCRIPT, tmp_path)
    assert printed[0] == printed[1]
    assert "active ['b', 'c'] deleted ['a'] all ['a', 'b', 'c']" in printed[0]
    assert "its runs [] ['a', 'b2', 'c']" in printed[0]
