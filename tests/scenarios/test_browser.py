"""The UIs in a real browser: headless Chromium from the system's packages, driven by Playwright.

Logs in to Airflow and sees the example DAGs and a successful run's task log; opens the MLflow
run with its PNG artifact and the registered model with its champion alias; opens JupyterLab
with the token and a notebook. Each page is saved as a screenshot: `nox -s screenshots` writes
them to docs/screenshots/ (H2OPS_SCREENSHOTS_DIR), which the README shows.

Nothing is downloaded at run time (never `playwright install`): Chromium is Debian's
(`apt-get install chromium`); without it the test skips with that command, and fails under CI.

Cost: on the shared stack, one training run if the e2e has not made one (about two minutes),
then a Chromium start and five pages.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.testing import RunningStack, poll_until, unavailable

CHROMIUM = os.environ.get("H2OPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_TIMEOUT_MS = 120_000  # a busy 2-core machine renders Airflow's UI slowly
TRAINING_DAG = "example_training"
TRAINING_TIMEOUT = 600.0
MODEL = "example-water-mask"
EXPERIMENT = "example-water-mapping"
IMAGE = "validation_tile.png"
NOTEBOOK = "notebooks/01_explore_tiles.ipynb"

# Training the example first takes minutes on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def chromium_or_skip() -> str:
    """The system's Chromium; else `unavailable`, naming the install command."""
    found = shutil.which(CHROMIUM) or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if found:
        return found
    unavailable(f"{CHROMIUM} is missing: `apt-get install -y chromium` enables the browser test")


@dataclass
class Trained:
    """A successful training run in Airflow and what it left in MLflow."""

    dag_run_id: str
    task_id: str
    experiment_id: str
    mlflow_run_id: str


@pytest.fixture(scope="module")
def trained(stack: RunningStack) -> Trained:
    """The example trained once on this stack (reusing a successful run if the e2e made one)."""
    with stack.airflow_api(timeout=60) as api:

        def states() -> list[tuple[str, str]]:
            """(run id, state) of each training run; none while the API is too busy to answer
            (a training task holds SQLite's write lock on a slow machine)."""
            try:
                response = api.get(f"/dags/{TRAINING_DAG}/dagRuns")
            except httpx.TimeoutException:
                return []
            runs = response.json()["dag_runs"] if response.is_success else []  # not parsed yet
            return [(run["dag_run_id"], run["state"]) for run in runs]

        def succeeded() -> list[str]:
            return [run_id for run_id, state in states() if state == "success"]

        if not succeeded():
            # The shared stack may hold other tests' runs, failed ones too: wait for this one.
            assert poll_until(lambda: api.get(f"/dags/{TRAINING_DAG}").is_success, 120, 2)
            response = api.post(f"/dags/{TRAINING_DAG}/dagRuns", json={"logical_date": None})
            assert response.is_success, response.text
            ours = response.json()["dag_run_id"]
            finished = lambda: dict(states()).get(ours) in ("success", "failed")  # noqa: E731
            assert poll_until(finished, TRAINING_TIMEOUT, 3), f"{ours} did not finish"
        runs = succeeded()
        assert runs, f"{TRAINING_DAG} did not succeed: {states()}"
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    with_image = [
        run.info.run_id
        for run in client.search_runs([experiment.experiment_id], max_results=20)
        if any(item.path == IMAGE for item in client.list_artifacts(run.info.run_id))
    ]
    assert with_image, f"no run of {EXPERIMENT} has {IMAGE}"
    return Trained(runs[0], "train", experiment.experiment_id, with_image[0])


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("H2OPS_SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(screenshots: Path) -> Iterator[Any]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def close_mlflow_assistant(page: Any) -> None:
    """MLflow 3.17 opens its (optional, unconfigured) assistant panel beside every page."""
    panel = page.get_by_text("MLflow Assistant").first
    if panel.is_visible():
        panel.locator("xpath=ancestor::*[.//button][1]").locator("button").last.click()


def shoot(page: Any, folder: Path, name: str) -> Path:
    page.wait_for_timeout(1500)  # let charts and fonts settle
    path = folder / f"{name}.png"
    page.screenshot(path=path)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def test_airflow_login_dags_and_a_task_log(
    stack: RunningStack, trained: Trained, page: Any, screenshots: Path
) -> None:
    page.goto(f"{stack.airflow_url}/", wait_until="domcontentloaded")
    page.fill("input[name=username]", stack.airflow_username)
    page.fill("input[name=password]", stack.airflow_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    page.goto(f"{stack.airflow_url}/dags", wait_until="domcontentloaded")
    for dag in ("example_inference", "example_training", "example_training_from_config"):
        page.get_by_role("link", name=dag, exact=True).first.wait_for()
    shoot(page, screenshots, "airflow-dags")

    run = f"{stack.airflow_url}/dags/{TRAINING_DAG}/runs/{trained.dag_run_id}"
    page.goto(f"{run}/tasks/{trained.task_id}", wait_until="domcontentloaded")
    page.get_by_text("Done. Returned value was").first.wait_for()
    shoot(page, screenshots, "airflow-task-log")


def test_mlflow_run_with_its_image_and_the_champion(
    stack: RunningStack, trained: Trained, page: Any, screenshots: Path
) -> None:
    run = f"{stack.mlflow_url}/#/experiments/{trained.experiment_id}/runs/{trained.mlflow_run_id}"
    page.goto(f"{run}/artifacts/{IMAGE}", wait_until="domcontentloaded")
    page.get_by_text(f"artifacts/{IMAGE}").first.wait_for()  # the artifact's path
    # The PNG itself, loaded and decoded (a broken image has no natural width).
    page.wait_for_function("[...document.images].some(i => i.complete && i.naturalWidth >= 200)")
    close_mlflow_assistant(page)
    shoot(page, screenshots, "mlflow-run-artifact")

    page.goto(f"{stack.mlflow_url}/#/models/{MODEL}", wait_until="domcontentloaded")
    page.get_by_text("champion").first.wait_for()
    shoot(page, screenshots, "mlflow-champion")


def test_jupyterlab_opens_a_notebook_with_the_token(
    stack: RunningStack, page: Any, screenshots: Path
) -> None:
    url = f"{stack.jupyter_url}/lab/tree/{NOTEBOOK}?token={stack.jupyter_token}"
    page.goto(url, wait_until="domcontentloaded")
    page.locator(".jp-Notebook h1", has_text="Explore the tiles").first.wait_for()
    page.get_by_text(re.compile(r"\| Idle$")).first.wait_for()  # its kernel started
    shoot(page, screenshots, "jupyterlab-notebook")
