"""Log a small training run to the default store (./lakestore-data, or $LAKESTORE_URI).

python examples/quickstart.py
lakestore query "SELECT key, count(*) AS points, min(value), max(value) FROM metrics GROUP BY key"
"""

import math
import random

import lakestore

random.seed(0)
with lakestore.start_run(experiment="mnist", run_name="baseline", tags={"team": "vision"}) as run:
    run.log_params({"lr": 0.01, "layers": 3, "optimizer": "adam"})
    for step in range(1_000):
        loss = 2.3 * math.exp(-step / 300) + random.uniform(0, 0.05)
        run.log_metric("loss", loss, step=step)
        if step % 100 == 0:
            run.log_metrics({"acc": 1 - loss / 2.5, "f1": 1 - loss / 2.4}, step=step)

print(f"logged run {run.run_id} of experiment {run.experiment!r} to {run.store_uri}")
