"""The `serving` service on a real stack (S3, MLflow, serving): waiting without a champion,
predictions from MLflow's scoring server, following the alias with no failed request, refusing
a model the environment cannot run, and keeping the version across `down`/`up`.

The tests follow one stack's life, in file order: no champion first, then versions registered
one after another. The model is a tiny pyfunc written here ("models from code"), so the tests
need nothing of the example project: version N adds N to its input.

Cost: one stack of three services, a `down`/`up` of it, and one fresh venv for the bundle.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.testing import RunningStack, StackRun, free_ports, poll_until, running
from services.engine.processes import stop_groups
from services.settings import REPO_ROOT

pytestmark = pytest.mark.stack
MODEL = "serving-test-model"
FOLLOW_TIMEOUT = 60.0
MODEL_CODE = """
import mlflow
from mlflow.pyfunc import PythonModel


class AddOffset(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input + context.model_config["offset"]


mlflow.models.set_model(AddOffset())
"""


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """S3, MLflow and serving only, asking the registry every second, for a test model."""
    run = StackRun(
        tmp_path_factory.mktemp("serving"),
        extra_env={"H2OPS_SERVING_MODEL": MODEL, "H2OPS_SERVING_POLL_SECONDS": "1"},
        services=("serving",),
    )
    yield from running(run)


@pytest.fixture
def client_env(serving: RunningStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """This test sees the stack's client environment; returns the serving URL."""
    for name, value in serving.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return serving.env["H2OPS_SERVING_URL"]


def register(offset: int, tmp_path: Path, requirements: list[str] | None = None) -> str:
    """Log the test model adding `offset`, register it and move the alias; returns the version."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    code = tmp_path / "add_offset.py"
    code.write_text(MODEL_CODE)
    rows = Schema([TensorSpec(np.dtype(np.float64), (-1, -1))])  # any number of columns
    mlflow.set_experiment("serving-tests")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            model_config={"offset": offset},
            signature=ModelSignature(inputs=rows, outputs=rows),
            pip_requirements=requirements or [f"mlflow=={mlflow.__version__}"],
        )
    version = mlflow.register_model(info.model_uri, MODEL).version
    MlflowClient().set_registered_model_alias(MODEL, "champion", version)
    return str(version)


def served(url: str) -> dict[str, str]:
    return httpx.get(f"{url}/h2ops/served", timeout=10).json()


def wait_until_served(url: str, version: str) -> float:
    """Seconds until `version` is served; fails after FOLLOW_TIMEOUT."""
    started = time.monotonic()
    if not poll_until(lambda: served(url)["version"] == version, FOLLOW_TIMEOUT, 0.2):
        raise AssertionError(f"{version} not served after {FOLLOW_TIMEOUT} s: {served(url)}")
    return time.monotonic() - started


def predict(url: str, rows: list[list[float]]) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json={"inputs": rows}, timeout=30)


def test_without_a_champion_up_succeeds_and_status_says_waiting(serving: RunningStack) -> None:
    entry = serving.run.status().service("serving")
    assert entry.waiting and not entry.healthy, entry
    assert "waiting for a champion" in entry.detail and MODEL in entry.detail
    assert entry.details["model_uri"] == f"models:/{MODEL}@champion"
    assert serving.run.cli("status").returncode == 0, "waiting is not a failure"
    ping = httpx.get(f"{serving.env['H2OPS_SERVING_URL']}/ping", timeout=10)
    assert ping.status_code == 503 and "waiting for a champion" in ping.json()["message"]
    time.sleep(3)  # several polls later: still the same process, not restarted
    assert serving.run.status().service("serving").pid == entry.pid


def test_the_champion_is_served_and_answers_a_prediction(client_env: str, tmp_path: Path) -> None:
    version = register(1, tmp_path)
    print(f"\nfirst champion served {wait_until_served(client_env, version):.1f} s after the alias")
    response = predict(client_env, [[1.0, 2.0, 3.0]])
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[2.0, 3.0, 4.0]]}
    assert httpx.get(f"{client_env}/version", timeout=10).status_code == 200


def test_status_names_the_served_version_and_run(serving: RunningStack, client_env: str) -> None:
    from mlflow import MlflowClient

    champion = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    entry = serving.run.status().service("serving")
    assert entry.healthy
    assert entry.details["model_version"] == str(champion.version)
    assert entry.details["run_id"] == champion.run_id
    assert f"version {champion.version} (run {champion.run_id})" in serving.run.cli("status").stderr


def test_a_bad_request_gets_mlflows_4xx_and_the_server_stays_healthy(
    serving: RunningStack, client_env: str
) -> None:
    response = httpx.post(
        f"{client_env}/invocations",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error_code"] == "BAD_REQUEST"
    wrong_shape = httpx.post(f"{client_env}/invocations", json={"nothing": 1}, timeout=10)
    assert 400 <= wrong_shape.status_code < 500, wrong_shape.text
    assert httpx.get(f"{client_env}/ping", timeout=10).status_code == 200
    assert serving.run.status().service("serving").healthy


def test_moving_the_alias_serves_the_new_version_with_no_failed_request(
    client_env: str, tmp_path: Path
) -> None:
    before = served(client_env)["version"]
    failures: list[str] = []
    answers: set[float] = set()
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(f"{client_env}/invocations", json={"inputs": [[0.0]]})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    answers.add(response.json()["predictions"][0][0])

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        version = register(2, tmp_path)
        seconds = wait_until_served(client_env, version)
        time.sleep(1)
    finally:
        stop.set()
        asking.join(timeout=60)
    print(f"\nalias moved {before} -> {version}: served after {seconds:.1f} s")
    assert failures == []
    assert answers == {1.0, 2.0}, "requests were answered by the old, then by the new version"
    assert predict(client_env, [[1.0]]).json() == {"predictions": [[3.0]]}


def test_a_model_needing_what_the_environment_lacks_is_refused_naming_it(
    serving: RunningStack, client_env: str, tmp_path: Path
) -> None:
    before = served(client_env)["version"]
    register(3, tmp_path, requirements=["h2ops-no-such-package==1.0"])
    assert poll_until(lambda: served(client_env)["refused"], FOLLOW_TIMEOUT, 0.5)
    refused = served(client_env)["refused"]
    assert "h2ops-no-such-package==1.0 (not installed)" in refused
    entry = serving.run.status().service("serving")
    assert entry.healthy and entry.details["model_version"] == before, "the last one stays"
    assert "h2ops-no-such-package" in entry.detail
    assert predict(client_env, [[1.0]]).json() == {"predictions": [[3.0]]}


def test_down_and_up_serve_the_same_version(
    serving: RunningStack, client_env: str, tmp_path: Path
) -> None:
    version = register(4, tmp_path)
    wait_until_served(client_env, version)
    serving.run.down()
    started = time.monotonic()
    serving.run.up()
    print(f"\nup to serving healthy: {time.monotonic() - started:.1f} s")
    entry = serving.run.status().service("serving")
    assert entry.healthy and entry.details["model_version"] == version
    assert predict(client_env, [[1.0]]).json() == {"predictions": [[5.0]]}


def test_package_model_bundle_installs_fresh_and_serves_without_the_stack(
    serving: RunningStack, client_env: str, tmp_path: Path
) -> None:
    """The bundle: its files, its lock pinned to uv.lock and installable into a fresh venv (uv,
    PyPI or uv's cache), and MLflow's scoring server started from it alone, the stack down."""
    version = served(client_env)["version"]
    out = tmp_path / "bundle"
    bundle = ["-m", "services.serving.bundle", f"{MODEL}@champion", "--output", str(out)]
    made = subprocess.run(
        [sys.executable, *bundle],
        env=serving.run.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    files = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert {
        "model/MLmodel",
        "requirements.lock",
        "Containerfile",
        "Dockerfile",
        "serve.sh",
    } <= files
    assert any(name.startswith("wheels/") and name.endswith(".whl") for name in files)
    manifest = json.loads((out / "bundle.json").read_text())
    assert (manifest["model"], manifest["version"]) == (MODEL, version)
    assert "mlflow models serve" in " ".join((out / "Containerfile").read_text().split('", "'))
    assert "--require-hashes" in (out / "Containerfile").read_text()
    locked = {
        package["name"]: package["version"]
        for package in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]
        if "version" in package
    }
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (out / "requirements.lock").read_text(), re.M)
    assert ("mlflow", locked["mlflow"]) in pins
    assert all(locked[name.lower()] == pinned for name, pinned in pins), "pinned as uv.lock is"

    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).parent / "uv")
    install = [uv, "pip", "install", "--python", str(venv / "bin" / "python")]
    wheels = [str(path) for path in (out / "wheels").glob("*.whl")]
    for step in (
        [uv, "venv", str(venv), "--python", sys.executable],
        [*install, "--require-hashes", "-r", str(out / "requirements.lock")],
        [*install, "--no-deps", *wheels],
    ):
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stderr

    serving.run.down()  # no tracking server, no S3: the bundle alone
    with pytest.raises(httpx.ConnectError):
        httpx.get(serving.mlflow_url, timeout=5)
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "H2OPS_"))}
    serve = ["models", "serve", "-m", str(out / "model"), "--env-manager", "local"]
    server = subprocess.Popen(
        [str(venv / "bin" / "mlflow"), *serve, "--host", "127.0.0.1", "--port", str(port)],
        # It starts `uvicorn` from PATH: the bundle's venv first, as serve.sh and the
        # Containerfile have it (not this repository's .venv).
        env={
            **env,
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        },
        cwd=tmp_path,
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def pinged() -> bool:
            try:
                return httpx.get(f"{url}/ping", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        if not poll_until(pinged, 180, 1):
            log = (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the bundle's scoring server did not answer /ping:\n{log}")
        offset = float(version)  # each version here adds the offset it was registered with
        assert predict(url, [[1.0]]).json() == {"predictions": [[1.0 + offset]]}
    finally:
        stop_groups([server.pid], 10, server.poll)


def test_requirements_are_checked_against_the_installed_versions() -> None:
    from importlib.metadata import version

    from services.serving.requirements import unmet

    numpy = version("numpy")
    assert unmet([f"numpy=={numpy}", "packaging", 'pywin32==1; sys_platform == "win32"']) == []
    assert unmet(["numpy==0.0.1", "h2ops-no-such-package"]) == [
        f"numpy==0.0.1 (installed: {numpy})",
        "h2ops-no-such-package (not installed)",
    ]
