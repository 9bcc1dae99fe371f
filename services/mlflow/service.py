"""MLflow 3 tracking server: metadata in SQLite (in the state dir) or the stack's PostgreSQL,
artifacts proxied to s3://mlflow/ (or kept in a folder there when the stack runs without an
object store)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from services.engine.records import Program, Service, http_ok
from services.mlflow import app
from services.port_forwarding import allowed_origins, mlflow_allowed_hosts
from services.postgres.metadata import (
    metadata_requires,
    metadata_url,
    misplaced_metadata,
    prepare_metadata,
)
from services.s3.store import ARTIFACTS_URL

if TYPE_CHECKING:
    from pathlib import Path

    from services.plan import StackPlan
    from services.settings import StackSettings


def declare(plan: StackPlan) -> Service:
    settings = plan.settings
    home = plan.layout.service_dir("mlflow")
    requires = metadata_requires(settings)
    if plan.object_store:
        artifacts, requires = ARTIFACTS_URL, ("s3", *requires)
    else:
        artifacts = (home / "artifacts").as_uri()
    url = plan.url(settings.mlflow_port)
    environment = {
        "MLFLOW_SERVER_ALLOWED_HOSTS": ",".join(
            mlflow_allowed_hosts(settings.mlflow_port, os.environ)
        ),
        # Prompt optimisation and scorer jobs need a job runner; a local stack does not.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # Through the environment, not argv: with PostgreSQL it holds the password.
        "MLFLOW_BACKEND_STORE_URI": metadata_url(settings, plan.layout, "mlflow"),
    }
    if origins := allowed_origins(settings.mlflow_port, os.environ):
        environment["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] = ",".join(origins)
    return Service(
        name="mlflow",
        title="MLflow",
        programs=[
            Program(
                name="mlflow",
                command=[
                    sys.executable,
                    "-m",
                    app.__name__,
                    "--host",
                    settings.host,
                    "--port",
                    str(settings.mlflow_port),
                    "--artifacts-destination",
                    artifacts,
                ],
                environment=environment,
                directory=home,
            )
        ],
        url=url,
        ui=url,
        login="no login (loopback only)",
        probe=http_ok(f"{url}/health"),
        ports={"H2OPS_MLFLOW_PORT": settings.mlflow_port},
        requires=requires,
        refuse=lambda: misplaced_metadata(settings, plan.layout),
        prepare=lambda: prepare_home(settings, home),
    )


def prepare_home(settings: StackSettings, home: Path) -> None:
    """The artifacts folder (used without an object store) and, on PostgreSQL, the database."""
    (home / "artifacts").mkdir(parents=True, exist_ok=True)
    prepare_metadata(settings, "mlflow")
