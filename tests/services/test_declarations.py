"""Service declarations: what each service runs, on which port, needing what, told what."""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions

from services import port_forwarding
from services.airflow import main, preload
from services.airflow.service import PLUGINS_FOLDER
from services.catalog import declare_services, stack_of
from services.engine.rearm import LISTENER
from services.engine.records import Service
from services.engine.stack import StackError
from services.engine.supervisor import STACK_MARKER, render_config
from services.plan import StackPlan
from services.s3.store import resolve_backend
from services.settings import StackSettings

CLIENT_VARIABLES = {
    "MLFLOW_TRACKING_URI",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}


def make_settings(tmp_path: Path, **values: Any) -> StackSettings:
    defaults: dict[str, Any] = {
        "s3_access_key": "access",
        "s3_secret_key": "secret",
        "airflow_password": "pw",
        "airflow_jwt_secret": "jwt",
        "jupyter_token": "token",
        "state_dir": tmp_path / "state",
        "s3_backend": "rclone",
    }
    return StackSettings(**{**defaults, **values})


def make_plan(tmp_path: Path, **values: object) -> StackPlan:
    return StackPlan.of(make_settings(tmp_path, **values))


def by_name(plan: StackPlan) -> dict[str, Service]:
    return {s.name: s for s in declare_services(plan) if isinstance(s, Service)}


def client_environment(settings: StackSettings) -> dict[str, str]:
    return StackPlan.of(settings).client_environment()


def test_five_services_with_their_ports_and_order(tmp_path: Path) -> None:
    services = by_name(make_plan(tmp_path, airflow_port=18080))
    assert list(services) == ["s3", "mlflow", "airflow", "jupyter", "serving"]
    assert services["serving"].requires == ("mlflow",)
    assert services["serving"].ports == {"H2OPS_SERVING_PORT": 5001}
    assert services["airflow"].ports == {"H2OPS_AIRFLOW_PORT": 18080}
    assert services["mlflow"].requires == ("s3",)
    assert services["airflow"].program_names == [
        "airflow-preload",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ]


@pytest.mark.stack
def test_on_postgres_the_metadata_moves_and_airflow_runs_more_tasks(tmp_path: Path) -> None:
    """PostgreSQL starts before the services whose metadata it holds; they reach it through
    psycopg with the generated password, which no argv shows; Airflow drops the SQLite-only
    plugin and runs 4 tasks at once unless told otherwise."""
    sqlite = by_name(make_plan(tmp_path))
    assert sqlite["airflow"].programs[0].environment["AIRFLOW__CORE__PARALLELISM"] == "2"
    plan = make_plan(
        tmp_path, database="postgres", postgres_port=15432, postgres_password="pg-secret"
    )
    services = by_name(plan)
    assert list(services) == ["s3", "postgres", "mlflow", "airflow", "jupyter", "serving"]
    assert services["postgres"].ports == {"H2OPS_POSTGRES_PORT": 15432}
    assert services["mlflow"].requires == ("s3", "postgres")
    assert services["airflow"].requires == ("postgres",)
    airflow = services["airflow"].programs[0].environment
    assert airflow["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg://h2ops:pg-secret@127.0.0.1:15432/airflow"
    )
    assert airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith(
        "postgresql+psycopg_async://"
    )
    assert airflow["AIRFLOW__CORE__PLUGINS_FOLDER"] != str(PLUGINS_FOLDER)
    mlflow = services["mlflow"].programs[0].environment
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].endswith("@127.0.0.1:15432/mlflow")
    for service in services.values():
        for program in service.programs:
            assert "pg-secret" not in " ".join(program.command), program.name
    chosen = by_name(make_plan(tmp_path, database="postgres", airflow_parallelism=3))
    assert chosen["airflow"].programs[0].environment["AIRFLOW__CORE__PARALLELISM"] == "3"


def test_airflow_is_configured_for_a_laptop(tmp_path: Path) -> None:
    airflow = by_name(make_plan(tmp_path, airflow_port=18080, airflow_parallelism=3))["airflow"]
    env = airflow.programs[0].environment
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith(os.path.join("project", "dags"))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert int(env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"]) <= 10
    # one configuration shared by every component, so they agree on secret and URLs
    assert all(program.environment == env for program in airflow.programs)


def test_airflow_gets_aws_default_for_the_local_s3_and_none_without_it(tmp_path: Path) -> None:
    airflow = by_name(make_plan(tmp_path, s3_port=19000))["airflow"]
    connection = json.loads(airflow.programs[0].environment["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["conn_type"] == "aws"
    assert (connection["login"], connection["password"]) == ("access", "secret")
    assert connection["extra"]["endpoint_url"] == "http://127.0.0.1:19000"
    # the same connection for the airflow CLI and dag.test() in a shell or an editor
    assert airflow.client_environment["AIRFLOW_CONN_AWS_DEFAULT"] == json.dumps(connection)
    assert "SPT_NOENV" not in airflow.client_environment
    no_s3 = by_name(make_plan(tmp_path, s3_backend="none"))["airflow"]
    assert "AIRFLOW_CONN_AWS_DEFAULT" not in no_s3.programs[0].environment


def test_rclone_keeps_credentials_out_of_argv(tmp_path: Path) -> None:
    s3 = by_name(make_plan(tmp_path))["s3"]
    program = s3.programs[0]
    assert "secret" not in " ".join(program.command)
    assert program.environment["H2OPS_RCLONE_SECRET_KEY"] == "secret"
    assert s3.details["backend"] == "rclone"


def test_auto_prefers_minio_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "minio"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    settings = make_settings(tmp_path, s3_backend="auto")
    assert resolve_backend(settings)[0] == "minio"
    s3 = by_name(StackPlan.of(settings))["s3"]
    command = s3.programs[0].command
    assert command[0] == str(fake), "the minio found on PATH is what runs"
    assert "server" in command and f"127.0.0.1:{s3.ports['H2OPS_S3_PORT']}" in command
    assert s3.ports == {"H2OPS_S3_PORT": 9000, "H2OPS_S3_CONSOLE_PORT": 9001}
    assert s3.programs[0].environment["MINIO_ROOT_PASSWORD"] == "secret"


def test_auto_falls_back_to_rclone_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    backend, reason = resolve_backend(make_settings(tmp_path, s3_backend="auto"))
    assert backend == "rclone"
    assert "no minio binary on PATH" in reason


def test_without_object_store_mlflow_keeps_artifacts_locally(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, s3_backend="none")
    services = by_name(StackPlan.of(settings))
    assert "s3" not in services
    assert services["mlflow"].requires == ()
    artifacts = (settings.state_dir.resolve() / "mlflow" / "artifacts").as_uri()
    assert artifacts in services["mlflow"].programs[0].command
    env = client_environment(settings)
    assert env["H2OPS_DATA_URL"].startswith("file://")
    assert "AWS_ENDPOINT_URL_S3" not in env
    assert "AWS_S3_ENDPOINT" not in env


def test_client_environment_points_at_the_stack(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, mlflow_port=15000, s3_port=19000, serving_port=15001, host="0.0.0.0"
    )
    env = client_environment(settings)
    assert set(env) >= CLIENT_VARIABLES
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert env["H2OPS_SERVING_URL"] == "http://127.0.0.1:15001"
    assert env["AWS_ENDPOINT_URL_S3"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:19000"
    assert env["AWS_SECRET_ACCESS_KEY"] == "secret"
    # GDAL (rasterio) has names of its own for the same endpoint.
    assert env["AWS_S3_ENDPOINT"] == "127.0.0.1:19000"
    assert (env["AWS_HTTPS"], env["AWS_VIRTUAL_HOSTING"]) == ("NO", "FALSE")
    assert env["DO_NOT_TRACK"] == env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_supervisord_reads_every_program_as_declared(tmp_path: Path) -> None:
    """The config, read by supervisord's own parser: every declared program, none started by
    itself, each stopped and killed as a process group, values with % intact."""
    plan = make_plan(tmp_path, jupyter_token="50%off")
    programs = [p for service in by_name(plan).values() for p in service.programs]
    config = plan.layout.supervisor_config
    plan.layout.logs.mkdir(parents=True)  # supervisord checks its own log's folder
    config.write_text(render_config(plan.layout, programs, {STACK_MARKER: "x"}))
    options = ServerOptions()
    options.configfile = str(config)
    options.process_config(do_usage=False)
    assert options.umask == 0o077, "what supervisord and its programs create is owner-only"

    read = {c.name: c for group in options.process_group_configs for c in group.process_configs}
    assert set(read) == {program.name for program in programs} | {LISTENER}
    assert read[LISTENER].autostart, "the engine's re-arming listener starts with supervisord"
    for program in programs:
        seen = read[program.name]
        assert seen.command == shlex.join(program.command)
        assert not seen.autostart
        assert seen.stopasgroup and seen.killasgroup
        assert seen.environment == {STACK_MARKER: "x", **program.environment}
    assert read["jupyter"].environment["JUPYTER_TOKEN"] == "50%off"


@pytest.mark.parametrize(("uid", "allowed"), [(0, True), (1000, False)])
def test_jupyter_allows_root_only_when_running_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid: int, allowed: bool
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    command = by_name(make_plan(tmp_path))["jupyter"].programs[0].command
    assert ("--ServerApp.allow_root=True" in command) is allowed


CODESPACES = {
    "CODESPACE_NAME": "fluffy-lake-123",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
}


def test_local_run_accepts_only_loopback_hosts() -> None:
    hosts = port_forwarding.mlflow_allowed_hosts(5000, {})
    assert "localhost" in hosts and "127.0.0.1:*" in hosts
    assert not any("github" in host or host == "*" for host in hosts)
    assert port_forwarding.allowed_origins(5000, {}) == []
    assert port_forwarding.jupyter_local_hostnames(8888, {}) == ["localhost"]


def test_codespaces_accepts_its_forwarded_host() -> None:
    forwarded = "fluffy-lake-123-5000.app.github.dev"
    assert port_forwarding.forwarded_host(5000, CODESPACES) == forwarded
    assert forwarded in port_forwarding.mlflow_allowed_hosts(5000, CODESPACES)
    assert port_forwarding.allowed_origins(5000, CODESPACES) == [f"https://{forwarded}"]
    names = port_forwarding.jupyter_local_hostnames(8888, CODESPACES)
    assert "fluffy-lake-123-8888.app.github.dev" in names


def test_codespaces_settings_reach_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in CODESPACES.items():
        monkeypatch.setenv(key, value)
    services = by_name(make_plan(tmp_path))
    mlflow_env = services["mlflow"].programs[0].environment
    assert "fluffy-lake-123-5000.app.github.dev" in mlflow_env["MLFLOW_SERVER_ALLOWED_HOSTS"]
    assert mlflow_env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] == (
        "https://fluffy-lake-123-5000.app.github.dev"
    )
    jupyter = " ".join(services["jupyter"].programs[0].command)
    assert "fluffy-lake-123-8888.app.github.dev" in jupyter
    assert "--ServerApp.allow_origin=https://fluffy-lake-123-8888.app.github.dev" in jupyter


def test_airflow_components_fork_from_one_preload_server_unless_turned_off(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    socket = str(plan.layout.socket("airflow-preload"))
    programs = {p.name: p for p in by_name(plan)["airflow"].programs}
    server = programs.pop("airflow-preload")
    assert {preload.__name__, "serve", socket} <= set(server.command)
    for component in programs.values():  # each a client of that one server
        assert {preload.__name__, "run", socket} <= set(component.command), component.name

    separate = by_name(make_plan(tmp_path, airflow_preload=False))["airflow"]
    assert "airflow-preload" not in separate.program_names
    for component in separate.programs:  # each its own interpreter, none a preload client
        assert main.__name__ in component.command and preload.__name__ not in component.command


def test_a_switched_off_service_says_why_when_named(tmp_path: Path) -> None:
    stack = stack_of(make_plan(tmp_path, s3_backend="none"))
    with pytest.raises(StackError, match=r"s3 is off \(H2OPS_S3_BACKEND=none\): set it to auto"):
        stack.select(["s3"])
    with pytest.raises(StackError, match=r"postgres is off \(H2OPS_DATABASE=sqlite\): set H2"):
        stack.select(["postgres"])
    with pytest.raises(StackError, match="unknown service 'grafana': choose from mlflow, airflow"):
        stack.select(["grafana"])
