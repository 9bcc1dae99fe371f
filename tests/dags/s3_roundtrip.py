"""A DAG whose one task writes and reads objects in the stack's S3 with Airflow's own tools:
`ObjectStoragePath("s3://aws_default@data/...")` and `S3Hook`, both through the `aws_default`
connection the stack sets in the environment (AIRFLOW_CONN_AWS_DEFAULT).

Run as a file it calls `dag.test()`, as VS Code's "Airflow: dag.test()" launch configuration
does: `h2ops shell -- python tests/dags/s3_roundtrip.py PREFIX` (tests/services/test_workspace.py).
"""

from __future__ import annotations

import sys
from datetime import datetime

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import ObjectStoragePath, dag, task

BUCKET = "data"


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["h2ops-test"])
def h2ops_s3_roundtrip() -> None:
    @task
    def write_and_read(params: dict[str, str] | None = None) -> dict[str, str]:
        prefix = (params or {}).get("prefix", "h2ops-s3-roundtrip")
        through_path = ObjectStoragePath(f"s3://aws_default@{BUCKET}/{prefix}/path.txt")
        through_path.write_text("written through ObjectStoragePath")
        hook = S3Hook(aws_conn_id="aws_default")
        # Each tool reads what the other wrote.
        read_by_hook = hook.read_key(f"{prefix}/path.txt", bucket_name=BUCKET)
        hook.load_string("written through S3Hook", f"{prefix}/hook.txt", BUCKET, replace=True)
        read_by_path = (through_path.parent / "hook.txt").read_text()
        if read_by_hook != "written through ObjectStoragePath":
            raise ValueError(f"S3Hook read {read_by_hook!r}")
        if read_by_path != "written through S3Hook":
            raise ValueError(f"ObjectStoragePath read {read_by_path!r}")
        return {"hook": read_by_hook, "path": read_by_path}

    write_and_read()


roundtrip = h2ops_s3_roundtrip()

if __name__ == "__main__":
    run = roundtrip.test(run_conf={"prefix": sys.argv[1] if len(sys.argv) > 1 else "manual"})
    print(f"dag.test() finished: {run.state}")
    sys.exit(0 if run.state == "success" else 1)
