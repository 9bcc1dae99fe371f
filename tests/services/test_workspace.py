"""Code run outside the stack's own servers sees the stack: VS Code's env file, the project's
Jupyter kernel, `h2ops shell`, and Airflow's S3 tools through the `aws_default` connection.

Each test talks to the running `stack` (real S3, MLflow, Airflow) the way that client would:
the kernel is started by jupyter_client from its spec, the env file is read by python-dotenv,
the shell runs the real `airflow` CLI, the DAG task runs with `dag.test()`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values
from jupyter_client.manager import start_new_kernel

from devtools.testing import RunningStack, StackRun, s3_client
from services.plan import StackPlan
from services.settings import REPO_ROOT, load_settings
from services.workspace import CLIENT_ENV_FILE, write_editor_files

KERNEL = "water-mapping"  # project/pyproject.toml's name (`nox -s init` renames it)
EXAMPLE_DAGS = ("example_training", "example_inference", "example_training_from_config")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_file(stack: RunningStack) -> Path:
    return Path(stack.state_dir) / CLIENT_ENV_FILE


def test_env_file_is_private_parses_with_dotenv_and_its_endpoints_answer(
    stack: RunningStack,
) -> None:
    path = env_file(stack)
    assert mode(path) == 0o600
    parsed = dotenv_values(path)
    assert None not in parsed.values(), parsed  # every line has a value
    values = {key: value or "" for key, value in parsed.items()}
    assert values["MLFLOW_TRACKING_URI"] == stack.mlflow_url
    assert httpx.get(f"{values['MLFLOW_TRACKING_URI']}/health", timeout=10).text == "OK"
    s3 = s3_client(
        values["AWS_ENDPOINT_URL_S3"], values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]
    )
    assert {"mlflow", "data"} <= {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    connection = json.loads(values["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["extra"]["endpoint_url"] == stack.s3_endpoint
    assert connection["password"] == stack.s3_secret_key
    # The same file read as a shell would (direnv, the Nix shell's hook): same values.
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; echo "$AIRFLOW_CONN_AWS_DEFAULT"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert shell.stdout.strip() == values["AIRFLOW_CONN_AWS_DEFAULT"]


def test_project_kernel_is_listed_and_its_kernel_reaches_mlflow(
    stack: RunningStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernels = stack.run.kernels_dir
    assert mode(kernels / KERNEL) == 0o700
    assert mode(kernels / KERNEL / "kernel.json") == 0o600
    # Jupyter's own discovery, from the venv, as JupyterLab and VS Code use it.
    for name in ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL_S3", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)  # only the spec may provide them
    monkeypatch.setenv("JUPYTER_PATH", str(kernels.parent))
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "kernelspec", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert KERNEL in json.loads(listed.stdout)["kernelspecs"]
    manager, client = start_new_kernel(kernel_name=KERNEL, startup_timeout=120)
    try:
        outputs: list[str] = []
        code = (
            "import os, urllib.request\n"
            "uri = os.environ['MLFLOW_TRACKING_URI']\n"
            "print(uri, urllib.request.urlopen(uri + '/health', timeout=10).read().decode())\n"
        )
        reply = client.execute_interactive(
            code,
            timeout=120,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(outputs).split() == [stack.mlflow_url, "OK"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_h2ops_shell_runs_the_airflow_cli_against_the_stack(stack: RunningStack) -> None:
    result = stack.run.cli("shell", "--", "airflow", "dags", "list", "--output", "json")
    assert result.returncode == 0, result.stderr
    # Airflow prints warnings on stdout too; the listing is the one JSON line.
    listing = next(line for line in result.stdout.splitlines() if line.startswith("[{"))
    listed = {dag["dag_id"] for dag in json.loads(listing)}
    assert set(EXAMPLE_DAGS) <= listed


def test_a_dag_task_writes_and_reads_s3_through_objectstoragepath_and_s3hook(
    stack: RunningStack,
) -> None:
    prefix = f"roundtrip-{uuid.uuid4().hex[:8]}"
    dags = REPO_ROOT / "tests" / "dags"
    result = stack.run.cli(
        "shell",
        "--",
        "env",
        f"AIRFLOW__CORE__DAGS_FOLDER={dags}",  # dag.test() finds the DAG in its bundle
        sys.executable,
        str(dags / "s3_roundtrip.py"),
        prefix,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dag.test() finished: success" in result.stdout
    s3 = s3_client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)
    read = s3.get_object(Bucket="data", Key=f"{prefix}/path.txt")["Body"].read()
    assert read == b"written through ObjectStoragePath"
    read = s3.get_object(Bucket="data", Key=f"{prefix}/hook.txt")["Body"].read()
    assert read == b"written through S3Hook"


def test_no_git_tracked_file_holds_a_generated_secret(stack: RunningStack) -> None:
    secrets = [stack.s3_secret_key, stack.airflow_password, stack.jupyter_token]
    generated = (stack.run.base / "stack.env").read_text().splitlines()
    secrets += [line.split("=", 1)[1] for line in generated if line.startswith("H2OPS_")]
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = REPO_ROOT / name.decode()
        if not path.is_file():
            continue
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content, f"{name.decode()} holds a generated secret"
    settings = json.loads((REPO_ROOT / ".vscode" / "settings.json").read_text())
    assert settings["python.envFile"] == "${workspaceFolder}/.h2ops/" + CLIENT_ENV_FILE


@pytest.mark.stack
def test_clean_removes_the_kernel_it_wrote_but_not_a_foreign_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = StackRun(tmp_path)
    for key, value in run.env.items():
        if key.startswith("H2OPS_"):
            monkeypatch.setenv(key, value)
    env_file_path, kernel = write_editor_files(StackPlan.of(load_settings()).with_credentials())
    assert kernel == run.kernels_dir / KERNEL and (kernel / "kernel.json").exists()
    assert run.cli("clean", "--yes").returncode == 0
    assert not kernel.exists() and not env_file_path.exists()
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text('{"argv": [], "metadata": {}}')
    assert run.cli("clean", "--yes").returncode == 0
    assert kernel.exists(), "clean removed a kernel it did not write"
