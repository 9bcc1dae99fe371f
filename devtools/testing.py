"""pytest fixtures that run the real stack in a temporary state dir on free ports.

Registered in the root `conftest.py`, so both `tests/` and `project/tests/` can ask for
`stack` (the whole stack, started once per test session) or build their own with `StackRun`.
It also hands tests the stack's own helpers (`poll_until`) and a boto3 client (`s3_client`),
so no test writes them again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from botocore.config import Config

from devtools.harness import StackRun, free_ports
from services.engine.processes import poll_until
from services.engine.status import ProgramStatus
from services.plan import StatusReport
from services.postgres.discovery import PostgresNotFound, find_server

# The databases the `stack` fixture runs every test on (H2OPS_DATABASE).
DATABASES = ("sqlite", "postgres")

__all__ = [
    "RunningStack",
    "S3Server",
    "StackRun",
    "free_ports",
    "nox_sessions",
    "poll_until",
    "require_postgres",
    "running",
    "s3_client",
    "stack",
    "stack_on_postgres",
    "stack_on_sqlite",
    "stack_without_object_store",
]


def s3_client(endpoint: str, access_key: str, secret_key: str) -> BaseClient:
    """A boto3 client of the stack's S3 server (path-style, as MinIO and rclone expect): the
    library the example's data I/O and MLflow's artifact store use, so tests see what they see."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


@dataclass(frozen=True)
class S3Server:
    """The stack's S3 service under test, as its client environment describes it."""

    env: dict[str, str]  # the stack's client environment, but the URLs of services not running

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL_S3"]

    def client(self) -> BaseClient:
        return s3_client(
            self.endpoint, self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        )


def nox_sessions(noxfile: Path) -> set[str]:
    """The sessions a noxfile defines, as nox itself lists them (`nox -l`: `*` or `-` a line)."""
    listing = subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(noxfile), "-l"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(re.findall(r"^[*-] (\S+)", listing, re.MULTILINE))


@dataclass
class RunningStack:
    """What a test needs to talk to the running stack, as a user's code would."""

    run: StackRun
    airflow_url: str
    mlflow_url: str
    s3_endpoint: str
    jupyter_url: str
    airflow_username: str
    airflow_password: str
    s3_access_key: str
    s3_secret_key: str
    jupyter_token: str
    env: dict[str, str]
    state_dir: str
    database: str = "sqlite"
    postgres_password: str = ""

    @classmethod
    def from_status(cls, run: StackRun, report: StatusReport) -> RunningStack:
        urls = {service.name: service.url for service in report.services}
        return cls(
            run=run,
            airflow_url=urls["airflow"],
            mlflow_url=urls["mlflow"],
            s3_endpoint=urls.get("s3", ""),
            jupyter_url=urls["jupyter"],
            env=report.environment,
            state_dir=report.stack.state_dir,
            database=report.database,
            **report.credentials,
        )

    def airflow_api(self, timeout: float = 30) -> httpx.Client:
        """A client of Airflow's REST API (`/api/v2`), with a token from `/auth/token`."""
        response = httpx.post(
            f"{self.airflow_url}/auth/token",
            json={"username": self.airflow_username, "password": self.airflow_password},
            timeout=timeout,
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        return httpx.Client(
            base_url=f"{self.airflow_url}/api/v2",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def programs(self, service: str) -> dict[str, ProgramStatus]:
        """The supervisord programs of one service, by name: state and pid, from `status`."""
        return {program.name: program for program in self.run.status().service(service).programs}


def running(run: StackRun) -> Iterator[RunningStack]:
    """Bring `run` up, yield it, and stop it whatever happens: for a stack of a test's own."""
    try:
        run.up()
        yield RunningStack.from_status(run, run.status())
    finally:
        run.down()


def require_postgres() -> None:
    """Skip a PostgreSQL test where no server is installed; in CI (`CI` set), fail instead:
    there `.ci/run` installs one, so a missing server is a broken machine, not a choice."""
    try:
        find_server(None)
    except PostgresNotFound as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))


def _stack_on(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    if database == "postgres":
        require_postgres()
    run = StackRun(
        tmp_path_factory.mktemp(f"stack-{database}"), extra_env={"H2OPS_DATABASE": database}
    )
    yield from running(run)


@pytest.fixture(scope="session")
def stack_on_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The whole stack with its metadata in SQLite (the default)."""
    yield from _stack_on("sqlite", tmp_path_factory)


@pytest.fixture(scope="session")
def stack_on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The whole stack with its metadata in PostgreSQL (skipped where none is installed)."""
    yield from _stack_on("postgres", tmp_path_factory)


@pytest.fixture(scope="session", params=DATABASES)
def stack(request: pytest.FixtureRequest) -> RunningStack:
    """The whole stack, up once for the test session on each database, stopped after: every
    test that uses it runs on SQLite and on PostgreSQL. The end-to-end test asks for
    `stack_on_<database>` by name, and shares these stacks."""
    running_stack: RunningStack = request.getfixturevalue(f"stack_on_{request.param}")
    return running_stack


@pytest.fixture(scope="session")
def stack_without_object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The stack with H2OPS_S3_BACKEND=none: local artifacts and a file:// data store."""
    run = StackRun(tmp_path_factory.mktemp("stack-none"), extra_env={"H2OPS_S3_BACKEND": "none"})
    yield from running(run)
