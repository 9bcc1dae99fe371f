"""The environment a user's code needs to reach the stack, given to every service and task.

Airflow tasks, notebook kernels and the MLflow server inherit it, so `boto3.client("s3")`,
`mlflow.start_run()` and the example project's data I/O work with no configuration.
"""

from __future__ import annotations

from services.layout import StateLayout
from services.s3_store import resolve_backend
from services.settings import StackSettings
from services.urls import service_url

# Clients of the stack report nothing home either: MLflow's client (in tasks, kernels and a shell
# with `h2ops env`) would send usage telemetry; DO_NOT_TRACK is honoured by MLflow, dag-factory
# and others.
NO_TELEMETRY = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


def client_environment(settings: StackSettings) -> dict[str, str]:
    env = {"MLFLOW_TRACKING_URI": service_url(settings, settings.mlflow_port), **NO_TELEMETRY}
    backend, _ = resolve_backend(settings)
    if backend == "none":
        data_dir = StateLayout.of(settings).service_dir("data")
        env["H2OPS_DATA_URL"] = data_dir.as_uri()
        return env
    endpoint = service_url(settings, settings.s3_port)
    env.update(
        AWS_ENDPOINT_URL_S3=endpoint,
        MLFLOW_S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=settings.s3_access_key,
        AWS_SECRET_ACCESS_KEY=settings.s3_secret_key,
        AWS_DEFAULT_REGION="us-east-1",
        H2OPS_DATA_URL="s3://data",
    )
    return env
