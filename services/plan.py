"""The settings resolved once, for every service and command: which S3 backend runs and why,
where state lives, the URLs clients dial, and the environment a user's code needs.

Each service's declaration reads this plan instead of working these out again, so they cannot
disagree (MLflow's artifact store, the client environment and `status` all follow the one
backend resolved here).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from services.engine.layout import StateLayout
from services.engine.status import ServiceStatus, StackStatus
from services.settings import REPO_ROOT, StackSettings, ensure_credentials

# A client on this machine reaches a service bound to every address on loopback.
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
# Clients of the stack report nothing home either: MLflow's client (in tasks, kernels and a shell
# with `h2ops env`) would send usage telemetry; DO_NOT_TRACK is honoured by MLflow, dag-factory
# and others.
NO_TELEMETRY = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


def resolve_backend(settings: StackSettings) -> tuple[str, str]:
    """The S3 backend to run and why, so `up` can tell the user what it chose."""
    choice = settings.s3_backend
    if choice != "auto":
        return choice, f"H2OPS_S3_BACKEND={choice}"
    if shutil.which("minio"):
        return "minio", "a minio binary is on PATH"
    return "rclone", "no minio binary on PATH; using rclone serve s3 from the Python environment"


@dataclass(frozen=True)
class StackPlan:
    """One repository's stack, resolved: its settings, where it keeps state, its S3 backend."""

    settings: StackSettings
    root: Path
    layout: StateLayout
    s3_backend: str
    s3_backend_reason: str

    @classmethod
    def of(cls, settings: StackSettings, root: Path = REPO_ROOT) -> StackPlan:
        backend, reason = resolve_backend(settings)
        return cls(settings, root, StateLayout(settings.state_dir.resolve()), backend, reason)

    def with_credentials(self) -> StackPlan:
        """The plan with every missing credential generated into `.env` (see `up`)."""
        return replace(self, settings=ensure_credentials(self.settings))

    @property
    def object_store(self) -> bool:
        """Whether an S3 server runs at all (not with H2OPS_S3_BACKEND=none)."""
        return self.s3_backend != "none"

    def url(self, port: int) -> str:
        """The URL a client on this machine uses for a service on `port`."""
        host = self.settings.host
        host = "127.0.0.1" if host in _WILDCARD_HOSTS else host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def client_environment(self) -> dict[str, str]:
        """What a user's code needs to reach the stack; every program, Airflow task and
        notebook kernel gets it, so `boto3.client("s3")`, `mlflow.start_run()` and the
        project's data I/O work with no configuration."""
        env = {
            "MLFLOW_TRACKING_URI": self.url(self.settings.mlflow_port),
            "H2OPS_SERVING_URL": self.url(self.settings.serving_port),
            **NO_TELEMETRY,
        }
        if not self.object_store:
            env["H2OPS_DATA_URL"] = self.layout.service_dir("data").as_uri()
            return env
        endpoint = self.url(self.settings.s3_port)
        env.update(
            AWS_ENDPOINT_URL_S3=endpoint,
            MLFLOW_S3_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID=self.settings.s3_access_key,
            AWS_SECRET_ACCESS_KEY=self.settings.s3_secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            H2OPS_DATA_URL="s3://data",
        )
        return env

    def program_environment(self) -> dict[str, str]:
        """What every program gets: the client environment (telemetry off included), the
        locked environment's programs first on PATH, and unbuffered output for the logs."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**self.client_environment(), "PATH": path, "PYTHONUNBUFFERED": "1"}

    def report(self, status: StackStatus) -> StatusReport:
        return StatusReport(
            status,
            self.s3_backend,
            self.s3_backend_reason,
            self.settings.credentials,
            self.client_environment(),
        )


@dataclass(frozen=True)
class StatusReport:
    """What `status` shows: the engine's status with what the plan resolved. `status --json`
    prints it; the test harness and the bench read it back with `from_json`."""

    stack: StackStatus
    s3_backend: str
    s3_backend_reason: str
    credentials: dict[str, str]
    environment: dict[str, str]

    @property
    def services(self) -> list[ServiceStatus]:
        return self.stack.services

    def service(self, name: str) -> ServiceStatus:
        return self.stack.service(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "services": [service.to_json() for service in self.stack.services],
            "s3_backend": self.s3_backend,
            "s3_backend_reason": self.s3_backend_reason,
            "state_dir": self.stack.state_dir,
            "credentials": self.credentials,
            "environment": self.environment,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StatusReport:
        services = [ServiceStatus.from_json(service) for service in data["services"]]
        return cls(
            StackStatus(services, data["state_dir"]),
            data["s3_backend"],
            data["s3_backend_reason"],
            data["credentials"],
            data["environment"],
        )
