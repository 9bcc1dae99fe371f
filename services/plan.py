"""The settings resolved once, for every service and command: which S3 backend runs and why,
which database holds the metadata (and which PostgreSQL server), where state lives, the URLs
clients dial, and the environment a user's code needs.

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
from services.postgres.discovery import PostgresNotFound, PostgresServer, find_server
from services.settings import REPO_ROOT, StackSettings, ensure_credentials

# A client on this machine reaches a service bound to every address on loopback.
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
# Clients of the stack report nothing home either: MLflow's client (in tasks, kernels and a shell
# with `h2ops env`) would send usage telemetry; DO_NOT_TRACK is honoured by MLflow, dag-factory
# and others.
NO_TELEMETRY = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


# Airflow's LocalExecutor workers when H2OPS_AIRFLOW_PARALLELISM is unset: SQLite takes one
# writer at a time, PostgreSQL many.
DEFAULT_PARALLELISM = {"sqlite": 2, "postgres": 4}
# Where each service keeps its SQLite metadata (H2OPS_DATABASE=sqlite).
SQLITE_FILES = {"airflow": "airflow.db", "mlflow": "mlflow.db"}


def resolve_database(settings: StackSettings) -> tuple[PostgresServer | None, str]:
    """The PostgreSQL server to run and how it was found; None and what to do when there is
    none (only `up` needs one: `status` and `down` still work)."""
    if settings.database != "postgres":
        return None, "H2OPS_DATABASE=sqlite"
    try:
        found = find_server(settings.postgres_bin)
    except PostgresNotFound as error:
        return None, str(error)
    return found, found.describe()


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
    postgres_server: PostgresServer | None = None
    postgres_reason: str = "H2OPS_DATABASE=sqlite"

    @classmethod
    def of(cls, settings: StackSettings, root: Path = REPO_ROOT) -> StackPlan:
        backend, reason = resolve_backend(settings)
        server, server_reason = resolve_database(settings)
        layout = StateLayout(settings.state_dir.resolve())
        return cls(settings, root, layout, backend, reason, server, server_reason)

    # -- the metadata database ----------------------------------------------------------------

    @property
    def postgres(self) -> bool:
        return self.settings.database == "postgres"

    @property
    def postgres_cluster(self) -> Path:
        return self.layout.service_dir("postgres")

    def metadata_url(self, service: str, variant: str = "sync") -> str:
        """Where `service` (airflow, mlflow) keeps its metadata (a SQLAlchemy URL): its SQLite
        file in its folder of the state dir, or its database in the stack's PostgreSQL through
        psycopg (3), sync or async."""
        if not self.postgres:
            return f"sqlite:///{self.layout.service_dir(service) / SQLITE_FILES[service]}"
        settings = self.settings
        driver = "postgresql+psycopg_async" if variant == "async" else "postgresql+psycopg"
        return (
            f"{driver}://h2ops:{settings.postgres_password}@127.0.0.1:"
            f"{settings.postgres_port}/{service}"
        )

    @property
    def metadata_requires(self) -> tuple[str, ...]:
        """What a service with metadata waits for: the database server, if one runs."""
        return ("postgres",) if self.postgres else ()

    @property
    def airflow_parallelism(self) -> int:
        chosen = self.settings.airflow_parallelism
        return chosen if chosen is not None else DEFAULT_PARALLELISM[self.settings.database]

    def database_line(self) -> str:
        """What `up` says about the metadata database."""
        if not self.postgres:
            return "sqlite (files in the state dir; H2OPS_DATABASE=postgres for PostgreSQL)"
        return f"postgres ({self.postgres_reason})"

    def sqlite_metadata_present(self) -> str | None:
        """Why PostgreSQL must not start empty here: this state dir holds SQLite metadata."""
        found = [
            path
            for service, name in SQLITE_FILES.items()
            if (path := self.layout.service_dir(service) / name).exists()
        ]
        if not found:
            return None
        return (
            f"H2OPS_DATABASE=postgres, but {self.layout.root} holds SQLite metadata "
            f"({', '.join(str(path) for path in found)}) that PostgreSQL would not have: the "
            "stack would start with no runs and no DAG history. Keep it with "
            "H2OPS_DATABASE=sqlite, or start afresh on PostgreSQL with `nox -s clean` (deletes "
            "that state) or another H2OPS_STATE_DIR"
        )

    def database_problem(self, starting: list[str]) -> str | None:
        """Why `up` of these services must not start: no PostgreSQL server to run, or the
        metadata is in the other database."""
        if self.postgres and self.postgres_server is None and "postgres" in starting:
            return self.postgres_reason
        if self.postgres and not (self.postgres_cluster / "PG_VERSION").exists():
            return self.sqlite_metadata_present()
        return self.postgres_cluster_present()

    def postgres_cluster_present(self) -> str | None:
        """Why SQLite must not start empty here: this state dir holds a PostgreSQL cluster."""
        if self.postgres or not (self.postgres_cluster / "PG_VERSION").exists():
            return None
        return (
            f"H2OPS_DATABASE=sqlite, but {self.layout.root} holds the stack's PostgreSQL "
            f"cluster ({self.postgres_cluster}): the stack would start with no runs and no DAG "
            "history. Keep it with H2OPS_DATABASE=postgres, or start afresh on SQLite with "
            "`nox -s clean` or another H2OPS_STATE_DIR"
        )

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
