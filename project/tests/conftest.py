"""Fixtures for the project's tests: a real S3 server, MLflow and Airflow in temp dirs.

- `s3_server`: the stack's own S3 service (`h2ops up s3`, through the test harness) in a temp
  state dir on free ports, with its generated keys and its buckets `data` and `mlflow`, for
  one test session; tests see the stack's own client environment for it.
- `mlflow_tracking_uri` / `mlflow_experiment`: a local SQLite MLflow store in a temp dir.
- `airflow_home` / `airflow_db`: AIRFLOW_HOME in a temp dir and its migrated SQLite database,
  set up once per session; `dag_bag`: the DAGs folder parsed against it.

Airflow reads its configuration when first imported, so tests import it only inside tests
or fixtures that depend on `airflow_home`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devtools.testing import S3Server, StackRun

PROJECT_DIR = Path(__file__).resolve().parents[1]
DAGS_FOLDER = PROJECT_DIR / "dags"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The stack's S3 service alone, up for the test session, stopped after."""
    run = StackRun(tmp_path_factory.mktemp("s3"), extra_env={"H2OPS_S3_BACKEND": "rclone"})
    try:
        run.up("s3")
        environment = run.status().environment
        # Only S3 runs here: no MLflow or served model to point clients at.
        others = {"MLFLOW_TRACKING_URI", "H2OPS_SERVING_URL"}
        yield S3Server({k: v for k, v in environment.items() if k not in others})
    finally:
        run.down()


@pytest.fixture
def s3_data_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The stack's client environment for this test: data at s3://data on `s3_server`."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
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
    experiments named by the test's `mlflow_experiment` mark keeping their artifacts in
    s3://mlflow/ (a SQLite tracking URI alone would put them in the working directory)."""
    import mlflow

    mark = request.node.get_closest_marker("mlflow_experiment")
    if mark is None:
        raise pytest.UsageError(
            f"{request.node.nodeid} uses pipeline_env: mark it with "
            "@pytest.mark.mlflow_experiment(NAME, ...), the experiments the pipeline logs to"
        )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
    monkeypatch.chdir(tmp_path)
    for experiment in mark.args:
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
