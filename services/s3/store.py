"""What the object store is, for everyone who uses it: its buckets, its region, which backend
runs and why. The S3 service owns these facts; the client environment, Airflow's connection,
MLflow's artifact store and `deploy/` import them from here.

No import of the plan: the plan reads this module to resolve the backend once.
"""

from __future__ import annotations

import shutil

from services.settings import S3Backend, StackSettings

ARTIFACTS_BUCKET = "mlflow"  # MLflow's artifacts, proxied by its server
DATA_BUCKET = "data"  # the project's data (H2OPS_DATA_URL)
BUCKETS = (ARTIFACTS_BUCKET, DATA_BUCKET)
REGION = "us-east-1"  # a fixed region: no lookup, and what every client is told
DATA_URL = f"s3://{DATA_BUCKET}"
ARTIFACTS_URL = f"s3://{ARTIFACTS_BUCKET}/"


def resolve_backend(settings: StackSettings) -> tuple[S3Backend, str]:
    """The S3 backend to run and why, so `up` can tell the user what it chose."""
    choice = settings.s3_backend
    if choice != "auto":
        return choice, f"H2OPS_S3_BACKEND={choice}"
    if shutil.which("minio"):
        return "minio", "a minio binary is on PATH"
    return (
        "rclone",
        "no minio binary on PATH; using rclone serve s3 from the Python environment",
    )
