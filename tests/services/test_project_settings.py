"""deploy/airflow_settings.yaml: the project's connections and variables, one committed file
for the local stack (`up`) and the cluster (`nox -s deploy`), secrets by reference only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from devtools.deploy import Cluster, Project, airflow_values
from devtools.deploy_secrets import secret_manifests
from services.airflow.project_settings import SETTINGS_FILE
from services.airflow.service import declare
from services.engine.records import Service
from services.plan import StackPlan
from services.settings import REPO_ROOT, StackSettings

SETTINGS = """\
connections:
  weather_api:
    conn_type: http
    host: https://api.example.org
    password: ${WEATHER_API_TOKEN}
variables:
  tile_size: "256"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / SETTINGS_FILE).parent.mkdir(parents=True)
    (tmp_path / SETTINGS_FILE).write_text(SETTINGS)
    return tmp_path


def _airflow(root: Path) -> Service:
    settings = StackSettings(
        s3_access_key="access",
        s3_secret_key="secret",
        airflow_password="pw",
        airflow_jwt_secret="jwt",
        jupyter_token="token",
        state_dir=root / "state",
        s3_backend="rclone",
    )
    return declare(StackPlan.of(settings, root))


def _airflow_env(root: Path) -> dict[str, str]:
    return _airflow(root).programs[0].environment


def test_the_local_stack_gets_them_with_the_reference_filled(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEATHER_API_TOKEN", "from-the-environment")
    env = _airflow_env(root)
    connection = json.loads(env["AIRFLOW_CONN_WEATHER_API"])
    assert connection == {
        "conn_type": "http",
        "host": "https://api.example.org",
        "password": "from-the-environment",
    }
    assert env["AIRFLOW_VAR_TILE_SIZE"] == "256"
    assert "AIRFLOW_CONN_AWS_DEFAULT" in env  # the stack's own stays


def test_a_missing_reference_stops_up_by_name_but_not_down(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEATHER_API_TOKEN", raising=False)
    airflow = _airflow(root)  # `down` and `status` declare the services too: no error here
    assert "AIRFLOW_CONN_WEATHER_API" not in airflow.programs[0].environment
    assert airflow.programs[0].environment["AIRFLOW_VAR_TILE_SIZE"] == "256"
    assert airflow.refuse is not None
    assert "refers to WEATHER_API_TOKEN" in (airflow.refuse() or "")
    # The value may come from .env too, as every setting can.
    (root / ".env").write_text("WEATHER_API_TOKEN=from-dotenv\n")
    env = _airflow_env(root)
    assert json.loads(env["AIRFLOW_CONN_WEATHER_API"])["password"] == "from-dotenv"


def test_the_cluster_gets_them_inline_or_from_the_settings_secret(root: Path) -> None:
    from services.airflow.project_settings import AirflowSettings

    declared = AirflowSettings.read(root).environment()
    project = replace(Project.read(REPO_ROOT), project_settings=declared)
    cluster = Cluster.load(REPO_ROOT / "deploy" / "cluster.toml")
    values = airflow_values(cluster, project, "tag")
    env = {entry["name"]: entry["value"] for entry in values["env"]}
    assert env["AIRFLOW_VAR_TILE_SIZE"] == "256"
    assert "AIRFLOW_CONN_WEATHER_API" not in env  # it holds a secret: never in the values
    assert {
        "envName": "AIRFLOW_CONN_WEATHER_API",
        "secretName": "h2ops-airflow-settings",
        "secretKey": "airflow-conn-weather-api",
    } in values["secret"]
    # `--secrets` fills that Secret from the environment, as `up` does locally.
    by_reference = {"AIRFLOW_CONN_WEATHER_API": declared["AIRFLOW_CONN_WEATHER_API"]}
    environ = {
        "WEATHER_API_TOKEN": "cluster-token",
        "H2OPS_CLUSTER_S3_ACCESS_KEY_ID": "a",
        "H2OPS_CLUSTER_S3_SECRET_ACCESS_KEY": "b",
        "H2OPS_CLUSTER_AIRFLOW_DATABASE_URL": "postgresql://a",
        "H2OPS_CLUSTER_MLFLOW_DATABASE_URL": "postgresql://b",
    }
    manifests = {
        m["metadata"]["name"]: m for m in secret_manifests(cluster, environ, {}, by_reference)
    }
    stored = manifests["h2ops-airflow-settings"]["stringData"]["airflow-conn-weather-api"]
    assert json.loads(stored)["password"] == "cluster-token"
