"""Every service of the stack, in start order; the one place that lists them."""

from __future__ import annotations

from pathlib import Path

from services.airflow import service as airflow_components
from services.engine.records import Service
from services.jupyter import service as jupyter_lab
from services.mlflow import service as mlflow_tracking
from services.s3 import service as s3_store
from services.settings import REPO_ROOT, StackSettings


def declare_services(settings: StackSettings, root: Path = REPO_ROOT) -> list[Service]:
    declared = [
        s3_store.declare(settings),
        mlflow_tracking.declare(settings),
        airflow_components.declare(settings, root),
        jupyter_lab.declare(settings, root),
    ]
    return [service for service in declared if service is not None]
