"""The whole stack, through the clients a user's code uses: S3, MLflow, Airflow, Jupyter."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from devtools.testing import STATUS_POLL_SECONDS, RunningStack, poll_until, s3_client
from services.airflow.preload import program_of
from services.engine import housekeeping
from services.engine.layout import StateLayout
from services.engine.status import ProgramState, ServiceStatus
from services.engine.supervisor import Supervisor
from services.mlflow.app import UI_DEFAULTS

pytestmark = pytest.mark.stack
WAIT_SECONDS = 90


def s3(stack: RunningStack, secret: str | None = None) -> BaseClient:
    return s3_client(stack.s3_endpoint, stack.s3_access_key, secret or stack.s3_secret_key)


def service(stack: RunningStack, name: str) -> ServiceStatus:
    """One service's entry in `status --json`."""
    return stack.run.status().service(name)


def airflow_token(stack: RunningStack) -> str:
    response = httpx.post(
        f"{stack.airflow_url}/auth/token",
        json={"username": stack.airflow_username, "password": stack.airflow_password},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def test_status_reports_every_service_healthy(stack: RunningStack) -> None:
    report = stack.run.status()
    names = [service.name for service in report.services]
    assert names == ["s3", "mlflow", "airflow", "jupyter", "serving"]
    # Serving has no champion to serve until a model is registered: waiting, not failing.
    assert all(s.healthy or s.name == "serving" for s in report.services), report
    assert all(service.fine for service in report.services), report
    assert report.service("s3").details["backend"] in ("minio", "rclone")
    assert set(report.credentials) == {
        "airflow_username",
        "airflow_password",
        "jupyter_token",
        "s3_access_key",
        "s3_secret_key",
    }
    assert stack.run.cli("status").returncode == 0


def test_up_again_leaves_running_services_alone(stack: RunningStack) -> None:
    """... but prunes what aged meanwhile: a task log older than the retention goes, a new one
    stays; the hourly housekeeping listener runs beside the services."""
    layout = StateLayout(Path(stack.state_dir))
    run_folder = layout.service_dir("airflow") / "logs" / "dag_id=old" / "run_id=manual__old"
    run_folder.mkdir(parents=True)
    aged, fresh = run_folder / "attempt=1.log", run_folder / "attempt=2.log"
    aged.write_text("an old task's log")
    fresh.write_text("a recent task's log")
    fifteen_days_ago = time.time() - 15 * 86400
    os.utime(aged, (fifteen_days_ago, fifteen_days_ago))
    before = {s.name: s.pid for s in stack.run.status().services}
    result = stack.run.up()
    for name in before:
        assert f"{name} already running" in result.stderr, result.stderr
    after = {s.name: s.pid for s in stack.run.status().services}
    assert after == before
    assert not aged.exists() and fresh.exists()
    listener = Supervisor(layout).states()[housekeeping.LISTENER]
    assert listener.state is ProgramState.RUNNING, listener


def test_s3_put_get_with_generated_keys_and_refuses_wrong_ones(stack: RunningStack) -> None:
    client = s3(stack)
    buckets = {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
    assert {"mlflow", "data"} <= buckets
    key = f"tests/{uuid.uuid4().hex}.txt"
    client.put_object(Bucket="data", Key=key, Body=b"lake")
    assert client.get_object(Bucket="data", Key=key)["Body"].read() == b"lake"
    with pytest.raises(ClientError):
        s3(stack, secret="wrong-secret").get_object(Bucket="data", Key=key)


def test_mlflow_logs_metric_and_artifact_into_the_bucket(
    stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # As a user's code sees it: the stack's client environment, no URL or key in code.
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    client = MlflowClient()
    experiment_id = client.create_experiment(f"stack-test-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "iou", 0.75)
    artifact = tmp_path / "note.txt"
    artifact.write_text("water")
    client.log_artifact(run.info.run_id, str(artifact))
    assert client.get_run(run.info.run_id).data.metrics["iou"] == 0.75
    keys = [o["Key"] for o in s3(stack).list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys), keys


def test_airflow_api_needs_a_token_and_lists_dags(stack: RunningStack) -> None:
    anonymous = httpx.get(f"{stack.airflow_url}/api/v2/dags", timeout=30)
    assert anonymous.status_code == 401
    headers = {"Authorization": f"Bearer {airflow_token(stack)}"}
    response = httpx.get(f"{stack.airflow_url}/api/v2/dags", headers=headers, timeout=30)
    assert response.status_code == 200
    assert "dags" in response.json()
    wrong = httpx.post(
        f"{stack.airflow_url}/auth/token",
        json={"username": stack.airflow_username, "password": "not-the-password"},
        timeout=30,
    )
    assert wrong.status_code in (401, 403)


def test_jupyter_starts_a_kernel_with_the_token_only(stack: RunningStack) -> None:
    url = f"{stack.jupyter_url}/api/kernels"
    assert httpx.post(url, json={"name": "python3"}, timeout=30).status_code == 403
    headers = {"Authorization": f"token {stack.jupyter_token}"}
    response = httpx.post(url, json={"name": "python3"}, headers=headers, timeout=60)
    assert response.status_code == 201, response.text
    kernel = response.json()["id"]
    try:
        listed = httpx.get(url, headers=headers, timeout=30).json()
        assert kernel in [k["id"] for k in listed]
    finally:
        httpx.delete(f"{url}/{kernel}", headers=headers, timeout=30)


def test_foreign_host_header_is_refused_locally(stack: RunningStack) -> None:
    headers = {"Host": "evil.example.com"}
    response = httpx.get(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search", headers=headers)
    assert response.status_code == 403
    jupyter = httpx.get(
        f"{stack.jupyter_url}/api/status",
        headers={**headers, "Authorization": f"token {stack.jupyter_token}"},
    )
    assert jupyter.status_code == 403


def test_mlflow_ui_opens_on_model_training_with_telemetry_off(stack: RunningStack) -> None:
    """The UI keeps these choices in the browser; the page sets them before the UI reads them,
    and the UI bundle must still read exactly these keys (`<key>_v<version>`)."""
    page = httpx.get(f"{stack.mlflow_url}/", timeout=30)
    assert page.status_code == 200
    defaults = re.search(r"Object\.entries\((\{.*?\})\)", page.text)
    assert defaults, page.text[:500]
    assert json.loads(defaults.group(1)) == UI_DEFAULTS
    bundle_path = re.search(r'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', page.text)
    assert bundle_path, page.text[:500]
    bundle = httpx.get(f"{stack.mlflow_url}/{bundle_path.group(1)}", timeout=60).text
    assert 'key:"mlflow.workflowType",version:1' in bundle
    assert '"mlflow.settings.telemetry.enabled"' in bundle
    assert '"mlflow.telemetry.info.alert.dismissed"' in bundle
    assert '"machine_learning"' in bundle
    telemetry = httpx.get(f"{stack.mlflow_url}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30)
    assert telemetry.json()["disable_ui_telemetry"] is True


def test_jupyterlab_neither_asks_about_news_nor_checks_for_updates(stack: RunningStack) -> None:
    """JupyterLab asks about news while its `fetchNews` setting is "none" (its default)."""
    headers = {"Authorization": f"token {stack.jupyter_token}"}
    settings = httpx.get(
        f"{stack.jupyter_url}/lab/api/settings/@jupyterlab/apputils-extension:notification",
        headers=headers,
        timeout=30,
    ).json()
    defaults = {name: spec["default"] for name, spec in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false"
    assert defaults["checkForUpdates"] is False
    page = httpx.get(f"{stack.jupyter_url}/lab", headers=headers, timeout=30).text
    config = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S
    )
    assert config, page[:500]
    assert json.loads(config.group(1))["news"] == {"disabled": True}, "no news feed"


def test_a_killed_service_is_restarted_and_healthy_again(disturbed_stack: RunningStack) -> None:
    stack = disturbed_stack
    before = service(stack, "mlflow")
    assert before.pid is not None
    os.kill(before.pid, signal.SIGKILL)

    def back() -> bool:
        now = service(stack, "mlflow")
        return now.healthy and now.pid != before.pid

    assert poll_until(back, WAIT_SECONDS, STATUS_POLL_SECONDS), (
        f"mlflow did not come back within {WAIT_SECONDS} s"
    )


def airflow_forks(stack: RunningStack) -> dict[str, psutil.Process]:
    """Airflow's components by name, found as children of the airflow-preload program."""
    server = service(stack, "airflow").program("airflow-preload")
    forks = {}
    for child in psutil.Process(server.pid).children():
        with contextlib.suppress(psutil.Error):
            forks[program_of(child.cmdline())] = child
    return forks


def test_airflow_components_are_forks_and_a_killed_one_comes_back(
    disturbed_stack: RunningStack,
) -> None:
    stack = disturbed_stack
    forks = airflow_forks(stack)
    assert set(forks) == {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    }
    scheduler = forks["airflow-scheduler"]
    workers = scheduler.children()
    assert workers, "LocalExecutor workers run under the scheduler"
    scheduler.kill()

    def back() -> bool:
        now = airflow_forks(stack).get("airflow-scheduler")
        return now is not None and now.pid != scheduler.pid and service(stack, "airflow").healthy

    assert poll_until(back, WAIT_SECONDS, STATUS_POLL_SECONDS), (
        f"the scheduler did not come back within {WAIT_SECONDS} s: {service(stack, 'airflow')}"
    )
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "the killed scheduler's workers are stopped, not left behind"


def test_a_killed_preload_server_brings_airflow_back_with_new_forks(
    disturbed_stack: RunningStack,
) -> None:
    stack = disturbed_stack
    airflow = service(stack, "airflow")
    programs = {p.name: p.pid for p in airflow.programs}
    before = airflow_forks(stack)
    # The worst case: the server and a client die together, so nobody is left to stop that
    # client's fork but the kernel (it dies with the server).
    for program in ("airflow-api-server", "airflow-preload"):
        pid = programs[program]
        assert pid is not None, f"{program} has no process"
        os.kill(pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(list(before.values()), timeout=30)
    assert not alive, "every fork of the killed server stopped"

    def back() -> bool:
        return service(stack, "airflow").healthy and set(airflow_forks(stack)) == set(before)

    assert poll_until(back, WAIT_SECONDS, STATUS_POLL_SECONDS), (
        f"Airflow did not come back within {WAIT_SECONDS} s: {service(stack, 'airflow')}"
    )
