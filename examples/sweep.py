"""A hyperparameter sweep of 50 runs, then search and compare (default store, or $LAKESTORE_URI).

python examples/sweep.py
"""

import math
import random

import lakestore

random.seed(1)
with lakestore.start_run(experiment="sweep-demo", run_name="sweep") as parent:
    for trial in range(50):
        lr = 10 ** random.uniform(-4, -1)
        optimizer = random.choice(["adam", "sgd"])
        with lakestore.start_run(nested=True, run_name=f"trial-{trial}") as run:
            run.log_params({"lr": lr, "optimizer": optimizer, "batch_size": 64})
            quality = 1 - abs(math.log10(lr) + 2.5) / 3 - (0.05 if optimizer == "sgd" else 0)
            steps = range(0, 200, 10)
            run.log_metric_series("loss", [math.exp(-quality * s / 50) for s in steps], steps=steps)
            run.log_metric("acc", round(quality, 4), step=200)

store = lakestore.connect()
best = store.search_runs(
    "params.optimizer = 'adam' and metrics.acc > 0.5",
    order_by=["metrics.acc DESC"],
    max_results=3,
    experiments=["sweep-demo"],
)
print(best.select('run_name, "params.lr", "metrics.acc"'))
top = [row[0] for row in best.select("run_id").fetchall()]
print(store.compare(top, only_differences=True).params)
