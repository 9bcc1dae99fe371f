"""deploy/ (the project's image and the Helm values for a cluster): rendered from the local
stack's settings, checked offline against the charts' schemas and Kubernetes' own, and the
command a KubernetesExecutor worker pod runs proven on real processes against a local stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from devtools.deploy import BAKED_PATHS, DEPLOY, Project, check, image_tag, render
from devtools.testing import RunningStack, StackRun, poll_until, s3_client
from services.port_forwarding import mlflow_allowed_hosts
from services.settings import REPO_ROOT
from services.workspace import CLIENT_ENV_FILE

# What the official chart's worker pod runs for a task: the cncf.kubernetes provider's
# KubernetesExecutor turns an ExecuteTask workload into this command (Airflow 3); the image's
# entrypoint (Airflow's /entrypoint) runs a `python` command as it is.
WORKER_COMMAND = ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string"]


@pytest.mark.stack
def test_the_committed_deploy_files_are_current_and_valid() -> None:
    assert check(DEPLOY, render()) == []


def test_the_image_installs_exactly_the_locked_packages() -> None:
    requirements = (DEPLOY / "requirements.txt").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "apache-airflow==3.3.2 \\" in requirements
    assert "--hash=sha256:" in requirements
    assert "--no-deps --require-hashes -r /opt/h2ops/requirements.txt" in dockerfile
    assert dockerfile.splitlines()[2].startswith("FROM apache/airflow:3.3.2-python3.12")
    # The preinstalled providers and the locked packages must fit together, or no image.
    assert "&& pip check" in dockerfile


def test_the_image_tag_changes_with_one_line_of_a_dag(tmp_path: Path) -> None:
    for baked in BAKED_PATHS:
        (tmp_path / baked).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (REPO_ROOT / baked).is_dir() else shutil.copy
        copy(REPO_ROOT / baked, tmp_path / baked)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    requirements = (DEPLOY / "requirements.txt").read_text()
    before = image_tag(tmp_path, "0.1.0", dockerfile, requirements)
    assert before == image_tag(tmp_path, "0.1.0", dockerfile, requirements)
    dag = sorted((tmp_path / "project" / "dags").glob("*.py"))[0]
    dag.write_text(dag.read_text() + "# one more line\n")
    after = image_tag(tmp_path, "0.1.0", dockerfile, requirements)
    assert after != before
    assert after.startswith("0.1.0-")
    # The Dockerfile and the locked requirements are baked in too.
    assert image_tag(tmp_path, "0.1.0", dockerfile + "\n", requirements) != after
    assert image_tag(tmp_path, "0.1.0", dockerfile, requirements + "\n") != after


def test_the_committed_values_use_the_image_tag_of_the_committed_files() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    requirements = (DEPLOY / "requirements.txt").read_text()
    tag = image_tag(REPO_ROOT, Project.read().project_version, dockerfile, requirements)
    for chart in ("airflow", "mlflow"):
        assert f"tag: {tag}\n" in (DEPLOY / "values" / f"{chart}.yaml").read_text()


def test_mlflow_on_the_cluster_accepts_a_port_forwarded_browser_and_the_service() -> None:
    values = yaml.safe_load((DEPLOY / "values" / "mlflow.yaml").read_text())
    allowed = values["server"]["value_options"]["allowed_hosts"].split(",")
    # The local stack's own patterns, so `kubectl port-forward svc/h2ops-mlflow 5050:5000` works.
    assert set(mlflow_allowed_hosts(5000, {})) <= set(allowed)
    assert {"localhost:*", "127.0.0.1:*"} <= set(allowed)
    assert "h2ops-mlflow.h2ops.svc.cluster.local:5000" in allowed


def test_the_champion_is_served_on_the_cluster_by_the_local_stack_s_server() -> None:
    from services.serving import server
    from services.settings import StackSettings

    deployment, service = yaml.safe_load_all((DEPLOY / "k8s" / "serving.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:3] == ["python", "-m", server.__name__]
    defaults = StackSettings.model_validate({"airflow_jwt_secret": "unused"})
    assert args[args.index("--model") + 1] == defaults.serving_model
    assert args[args.index("--alias") + 1] == defaults.serving_alias
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://h2ops-mlflow.h2ops.svc.cluster.local:5000"
    assert container["image"].endswith(":" + deployment_tag())
    # Tasks reach it where H2OPS_SERVING_URL says.
    airflow = yaml.safe_load((DEPLOY / "values" / "airflow.yaml").read_text())
    serving_url = {entry["name"]: entry["value"] for entry in airflow["env"]}["H2OPS_SERVING_URL"]
    port = service["spec"]["ports"][0]["port"]
    assert serving_url == f"http://{service['metadata']['name']}.h2ops.svc.cluster.local:{port}"


def deployment_tag() -> str:
    return yaml.safe_load((DEPLOY / "values" / "airflow.yaml").read_text())["defaultAirflowTag"]


def test_the_cluster_creates_no_default_user() -> None:
    values = yaml.safe_load((DEPLOY / "values" / "airflow.yaml").read_text())
    assert values["webserver"]["defaultUser"]["enabled"] is False
    assert "createUserJob" not in values


def _break(directory: Path, relative: str, old: str, new: str) -> None:
    path = directory / relative
    text = path.read_text()
    assert old in text, f"{old!r} is not in {relative}: the test no longer breaks anything"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("relative", "old", "new", "expected"),
    [
        (
            "values/airflow.yaml",
            "executor: KubernetesExecutor",
            "executor: KubernetesExecuter",
            "airflow.yaml: executor: 'KubernetesExecuter' does not match",
        ),
        (
            "values/airflow.yaml",
            "jwtSecretName: h2ops-airflow-jwt",
            "jwtSecret: inline-secret",
            "airflow.yaml: (top level): Additional properties are not allowed ('jwtSecret'",
        ),
        (
            "values/airflow.yaml",
            "postgresql:\n  enabled: false",
            "postgresql:\n  enabled: 'no'",
            "airflow.yaml: postgresql.enabled: 'no' is not of type 'boolean'",
        ),
        (
            "values/mlflow.yaml",
            "    port: 5000",
            "    port: '5000'",
            "mlflow.yaml: server.value_options.port: '5000' is not of type 'integer'",
        ),
        (
            "values/mlflow.yaml",
            "- name: AWS_SECRET_ACCESS_KEY\n  valueFrom:\n    secretKeyRef:\n"
            "      name: h2ops-s3\n      key: secret-access-key",
            "- name: AWS_SECRET_ACCESS_KEY\n  value: written-inline",
            "mlflow.yaml: env AWS_SECRET_ACCESS_KEY is a secret written inline",
        ),
        (
            "values/airflow.yaml",
            "webserver:\n  defaultUser:\n    enabled: false",
            "webserver:\n  defaultUser:\n    enabled: true",
            "airflow.yaml: webserver.defaultUser.enabled is not false: the chart would create",
        ),
        (
            "values/mlflow.yaml",
            "migrations:\n  enabled: true",
            "migrations:\n  enabled: 'yes'",
            "mlflow.yaml: migrations.enabled: 'yes' is not of type 'boolean'",
        ),
        (
            "k8s/namespace.yaml",
            "  labels:",
            "  labelz:",
            "namespace.yaml: metadata: Additional properties are not allowed ('labelz'",
        ),
    ],
    ids=[
        "executor-typo",
        "secret-inline-key",
        "own-postgres-type",
        "port-type",
        "secret-inline-env",
        "default-user",
        "mlflow-migrations",
        "k8s-field",
    ],
)
@pytest.mark.stack
def test_a_broken_value_fails_the_check(
    tmp_path: Path, relative: str, old: str, new: str, expected: str
) -> None:
    broken = tmp_path / "deploy"
    shutil.copytree(DEPLOY, broken)
    assert check(broken) == []
    _break(broken, relative, old, new)
    problems = check(broken)
    assert any(problem.startswith(expected) for problem in problems), problems
    # The session itself fails, naming the problem and that the file is not what it renders.
    result = subprocess.run(
        [sys.executable, "-m", "devtools.deploy", "--check", "--dir", str(broken)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    assert f"{relative} is out of date: run `nox -s deploy`" in result.stderr


def _pod_environment(
    stack_env: dict[str, str], airflow_url: str, client_env: Path
) -> dict[str, str]:
    """The environment deploy/values/airflow.yaml gives a worker pod, pointed at the local stack:
    its `env` list with the cluster's URLs swapped for the stack's, its `secret` list filled
    from the stack's credentials (a cluster fills them from its Secrets), and the Airflow
    settings the chart adds for every pod (the execution API, the image's DAGs folder). Remote
    task logging stays on, so the task's log must reach s3://data/airflow-logs."""
    values = yaml.safe_load((DEPLOY / "values" / "airflow.yaml").read_text())
    local = {
        "MLFLOW_TRACKING_URI": stack_env["MLFLOW_TRACKING_URI"],
        "AWS_ENDPOINT_URL_S3": stack_env["AWS_ENDPOINT_URL_S3"],
        "MLFLOW_S3_ENDPOINT_URL": stack_env["MLFLOW_S3_ENDPOINT_URL"],
        # GDAL's names for the same endpoint (rasterio reads scenes from s3://data).
        "AWS_S3_ENDPOINT": stack_env["AWS_S3_ENDPOINT"],
        "AWS_HTTPS": stack_env["AWS_HTTPS"],
    }
    environment = {
        entry["name"]: local.get(entry["name"], entry["value"]) for entry in values["env"]
    }
    # The Secrets' values: the stack's keys, and `aws_default` (through which remote task logs
    # go) as `up` defines it, the shape `--secrets` writes for the cluster.
    secrets = {
        **stack_env,
        "AIRFLOW_CONN_AWS_DEFAULT": dotenv_values(client_env)["AIRFLOW_CONN_AWS_DEFAULT"] or "",
    }
    for entry in values["secret"]:
        environment[entry["envName"]] = secrets[entry["envName"]]
    return {
        **environment,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "project" / "dags"),
        # This machine is shared and busy: the api-server may take longer than the 5 s a call
        # gets by default (four calls timed out in a row here once).
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
    }


def _queued_workload(run: StackRun, run_id: str, task_id: str) -> str:
    """The scheduler's half, in a process with the stack's settings: the task queued and its
    workload as the KubernetesExecutor serialises it."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from devtools.deploy import queue_workload; "
            "print(queue_workload(*sys.argv[1:]))",
            "example_training",
            run_id,
            task_id,
        ],
        env=run.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_the_worker_pod_command_completes_a_task_of_the_example_dag(
    stack: RunningStack, tmp_path: Path
) -> None:
    """On the shared stack: the run it makes is failed afterwards and the DAG unpaused again,
    so the stack's scheduler picks up nothing of it and later tests find the DAG as it was."""
    with stack.airflow_api() as api:
        assert poll_until(lambda: api.get("/dags/example_training").is_success, 120), (
            "example_training was not parsed"
        )
        was_paused = api.get("/dags/example_training").json()["is_paused"]
        # Paused, so the stack's own scheduler leaves the run to us (the "cluster").
        response = api.patch("/dags/example_training", json={"is_paused": True})
        assert response.is_success, response.text
        response = api.post("/dags/example_training/dagRuns", json={"logical_date": None})
        assert response.is_success, response.text
        run_id = response.json()["dag_run_id"]
        try:
            workload = _queued_workload(stack.run, run_id, "generate")
            client_env = Path(stack.state_dir) / CLIENT_ENV_FILE

            pod_home = tmp_path / "pod"
            pod_home.mkdir()
            result = subprocess.run(
                [*WORKER_COMMAND, workload],
                env={
                    **_pod_environment(stack.env, stack.airflow_url, client_env),
                    "HOME": str(pod_home),
                },
                cwd=pod_home,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

            instance = api.get(f"/dags/example_training/dagRuns/{run_id}/taskInstances/generate")
            assert instance.json()["state"] == "success", result.stdout[-3000:]
            client = s3_client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)
            written = client.list_objects_v2(Bucket="data", Prefix="raw/").get("Contents", [])
            assert written, "the task wrote no tile to s3://data/raw/"
            # Remote logging as the cluster has it: the task's log is in s3://data/airflow-logs.
            logs = client.list_objects_v2(Bucket="data", Prefix="airflow-logs/").get("Contents", [])
            keys = [item["Key"] for item in logs]
            ours = [key for key in keys if run_id in key and "generate" in key]
            assert ours, f"no log of this task under s3://data/airflow-logs/: {keys}"
        finally:
            api.patch(f"/dags/example_training/dagRuns/{run_id}", json={"state": "failed"})
            api.patch("/dags/example_training", json={"is_paused": was_paused})
