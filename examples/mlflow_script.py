"""An MLflow training script, switched to lakestore by its import line alone.

python examples/mlflow_script.py [STORE]    (default: $LAKESTORE_URI, else ./lakestore-data)

Everything below the import is MLflow's tracking API as MLflow's documentation uses it.
"""

import math
import sys

import lakestore.mlflow as mlflow  # was: import mlflow

if len(sys.argv) > 1:
    mlflow.set_tracking_uri(sys.argv[1])
experiment = mlflow.set_experiment("mlflow-demo")

with mlflow.start_run(run_name="sweep", description="a small sweep") as parent:
    for lr in (0.001, 0.01, 0.1):
        with mlflow.start_run(run_name=f"lr={lr}", nested=True) as run:
            mlflow.log_params({"lr": lr, "optimizer": "adam"})
            mlflow.set_tag("model.family", "mlp")
            for epoch in range(20):
                loss = math.exp(-epoch * lr * 10) + 0.05
                mlflow.log_metrics({"train/loss": loss, "val/loss": loss * 1.1}, step=epoch)
            mlflow.log_metric("val/acc", 1 - math.exp(-lr * 100) / 2)

client = mlflow.MlflowClient()
extra = client.create_run(experiment.experiment_id, run_name="from-the-client")
client.log_batch(
    extra.info.run_id,
    metrics=[mlflow.entities.Metric("val/acc", 0.42, 1_700_000_000_000, 0)],
    params=[mlflow.entities.Param("lr", "0.5")],
    tags=[mlflow.entities.RunTag("source", "client")],
)
client.set_terminated(extra.info.run_id)

best = mlflow.search_runs(
    experiment_names=["mlflow-demo"],
    filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    order_by=["metrics.`val/acc` DESC"],
)
print(best[["tags.mlflow.runName", "params.lr", "metrics.val/acc"]].to_string(index=False))
top = best["run_id"].iloc[0]
history = client.get_metric_history(top, "train/loss")
print(f"best run {mlflow.get_run(top).info.run_name}: {len(history)} train/loss points")
