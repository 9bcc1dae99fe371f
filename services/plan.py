"""The settings resolved once, for every service and command: which S3 backend runs and why,
where state lives, the URLs clients dial, and the environment a user's code needs.

Each service's declaration reads this plan instead of working these out again, so they cannot
disagree (MLflow's artifact store, the client environment and `status` all follow the one
backend resolved here). Facts a service owns (the buckets, the region, where metadata lives)
are imported from its room; no room's declaration is imported here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from services.engine.layout import StateLayout
from services.s3.store import DATA_URL, REGION, resolve_backend
from services.settings import REPO_ROOT, Database, S3Backend, StackSettings, ensure_credentials

# A client on this machine reaches a service bound to every address on loopback.
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
# Clients of the stack report nothing home either: MLflow's client (in tasks, kernels and a shell
# with `h2ops env`) would send usage telemetry; DO_NOT_TRACK is honoured by MLflow, dag-factory
# and others.
NO_TELEMETRY = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


@dataclass(frozen=True)
class ClientEndpoints:
    """Where a user's code finds the stack: filled in by the local stack (`StackPlan`) and by
    `deploy/` for a cluster, and turned into variables by `client_environment` alone."""

    tracking_uri: str
    serving_url: str
    data_url: str
    s3_endpoint: str | None = None  # None: no object store
    s3_keys: tuple[str, str] | None = None  # None: the keys come from elsewhere (a Secret)
    s3_region: str = REGION


def client_environment(endpoints: ClientEndpoints) -> dict[str, str]:
    """What a user's code needs to reach the stack, so `boto3.client("s3")`,
    `mlflow.start_run()` and the project's data I/O work with no configuration: the one
    builder of these variables, for programs, editors, shells and `deploy/`."""
    env = {
        "MLFLOW_TRACKING_URI": endpoints.tracking_uri,
        "H2OPS_SERVING_URL": endpoints.serving_url,
        **NO_TELEMETRY,
    }
    if endpoints.s3_endpoint is not None:
        env.update(
            AWS_ENDPOINT_URL_S3=endpoints.s3_endpoint, MLFLOW_S3_ENDPOINT_URL=endpoints.s3_endpoint
        )
        if endpoints.s3_keys is not None:
            env.update(
                AWS_ACCESS_KEY_ID=endpoints.s3_keys[0], AWS_SECRET_ACCESS_KEY=endpoints.s3_keys[1]
            )
        env["AWS_DEFAULT_REGION"] = endpoints.s3_region
        env.update(gdal_s3_environment(endpoints.s3_endpoint))
    env["H2OPS_DATA_URL"] = endpoints.data_url
    return env


def gdal_s3_environment(s3_endpoint: str) -> dict[str, str]:
    """GDAL's own names for the same S3 endpoint, so `rasterio.open` on an `s3://` URL reaches
    the stack wherever boto3 does: GDAL reads neither AWS_ENDPOINT_URL_S3 nor path-style
    addressing from boto3's settings. Listing a folder on every open is switched off too (a
    GeoTIFF needs no side-car files; it would cost a request per file)."""
    parsed = urlparse(s3_endpoint)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError(f"S3 endpoint {s3_endpoint!r} is not an http(s)://host:port URL")
    return {
        "AWS_S3_ENDPOINT": parsed.netloc,
        "AWS_HTTPS": "YES" if parsed.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }


@dataclass(frozen=True)
class StackPlan:
    """One repository's stack, resolved: its settings, where it keeps state, its S3 backend."""

    settings: StackSettings
    root: Path
    layout: StateLayout
    s3_backend: S3Backend
    s3_backend_reason: str

    @classmethod
    def of(cls, settings: StackSettings, root: Path = REPO_ROOT) -> StackPlan:
        backend, reason = resolve_backend(settings)
        layout = StateLayout(settings.state_dir.resolve())
        return cls(settings, root, layout, backend, reason)

    @property
    def database(self) -> Database:
        """Where Airflow's and MLflow's metadata lives: the stack-wide choice, as one value."""
        return self.settings.database

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

    @property
    def endpoints(self) -> ClientEndpoints:
        """Where this stack's services answer, for a client on this machine."""
        settings = self.settings
        if not self.object_store:
            data_url = self.layout.service_dir("data").as_uri()
            return ClientEndpoints(
                self.url(settings.mlflow_port), self.url(settings.serving_port), data_url
            )
        return ClientEndpoints(
            tracking_uri=self.url(settings.mlflow_port),
            serving_url=self.url(settings.serving_port),
            data_url=DATA_URL,
            s3_endpoint=self.url(settings.s3_port),
            s3_keys=(settings.s3_access_key, settings.s3_secret_key),
        )

    def client_environment(self) -> dict[str, str]:
        """What every program, Airflow task and notebook kernel gets to reach the stack."""
        return client_environment(self.endpoints)

    def program_environment(self) -> dict[str, str]:
        """What every program gets: the client environment (telemetry off included), the
        locked environment's programs first on PATH, and unbuffered output for the logs."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**self.client_environment(), "PATH": path, "PYTHONUNBUFFERED": "1"}
