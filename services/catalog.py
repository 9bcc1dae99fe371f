"""Every service of the stack, in start order; the one place that lists them."""

from __future__ import annotations

from pathlib import Path

from services import airflow_components, jupyter_lab, mlflow_tracking, s3_store
from services.service import Service
from services.settings import REPO_ROOT, StackSettings


def declare_services(settings: StackSettings, root: Path = REPO_ROOT) -> list[Service]:
    declared = [
        s3_store.declare(settings),
        mlflow_tracking.declare(settings),
        airflow_components.declare(settings, root),
        jupyter_lab.declare(settings, root),
    ]
    return [service for service in declared if service is not None]
