"""Log a run to S3 or any S3-compatible endpoint (MinIO, ...), then query it there.

export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_ENDPOINT_URL=http://host:9000
python examples/log_to_s3.py s3://bucket/team
"""

import sys

import lakestore

if len(sys.argv) != 2:
    print("usage: python examples/log_to_s3.py s3://bucket/prefix", file=sys.stderr)
    sys.exit(2)

lakestore.set_store(sys.argv[1])  # credentials and endpoint from the standard AWS variables
with lakestore.start_run(experiment="s3-demo", run_name="remote") as run:
    run.log_param("lr", 0.01)
    for step in range(100):
        run.log_metric("loss", 1 / (step + 1), step=step)

with lakestore.connect() as store:
    print(store.sql("SELECT run_name, status FROM runs"))
    print(store.sql("SELECT key, count(*) AS points, min(value) FROM metrics GROUP BY key"))
