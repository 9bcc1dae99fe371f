"""End to end on the running stack: the example as a user would run it.

Airflow trains (triggered through its REST API), the model Asset triggers inference, MLflow
holds the champion alias, the mlflow bucket holds the model's files, the data store holds
predictions, and the notebooks run top to bottom in a kernel with the stack's environment.

The pipeline runs on three stacks: with its metadata in SQLite (`stack_on_sqlite`, the
shared default stack) and in PostgreSQL (`stack_on_postgres`), and on
`stack_without_object_store` (H2OPS_S3_BACKEND=none), all from root conftest.py ->
devtools.testing; the notebooks run where the data store differs, the task-log checks on the
default stack, as do the promotion gate's refusal of a worse model and the retraining loop
(a hazy batch drifts, its Asset retrains, the gate promotes, serving follows: about 70 s).
Cost: about a minute of pipeline per stack and under half a minute per notebook, on top of
the stacks' starts. Each stack is an object with
`airflow_url`, `mlflow_url`, `s3_endpoint` ("" without S3), `jupyter_url`,
`airflow_username`, `airflow_password`, `s3_access_key`, `s3_secret_key`, `jupyter_token`
and `env` (the client variables: MLFLOW_TRACKING_URI, AWS_*, H2OPS_DATA_URL, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nbformat
import numpy as np
import pytest
from devtools.testing import poll_until, s3_client
from mlflow import MlflowClient
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from water_mapping.dataloader.synthetic_tiles import generate_tile
from water_mapping.model.metrics import mask_scores
from water_mapping.model.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    MODEL_NAME,
    load_champion,
)
from water_mapping.model.serving import predict_served, wait_until_serving
from water_mapping.postprocess.prediction_store import read_masks, read_predictions
from water_mapping.utils.data_store import open_data_store
from water_mapping.workflow_steps import PREDICTIONS_PREFIX, batch_id_from

pytestmark = pytest.mark.e2e

TRAINING_DAG = "example_training"
INFERENCE_DAG = "example_inference"
DAG_PARSE_TIMEOUT = 120.0  # the DAG processor picks up files every few seconds
RUN_TIMEOUT = 300.0
POLL_INTERVAL = 2.0
CELL_TIMEOUT = 300
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
FINISHED = {"success", "failed"}


class AirflowApi:
    """The few calls of Airflow's REST API (v2) that the test makes, with a JWT from /auth/token."""

    def __init__(self, url: str, username: str, password: str) -> None:
        token = httpx.post(
            f"{url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=f"{url}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            # Bounded, with room for a busy two-core machine where tasks hold SQLite's writer.
            timeout=90,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.request(method, path, **kwargs)
        if response.is_error:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def wait_until_parsed(self, dag_id: str) -> None:
        def parsed() -> bool:
            return self.client.get(f"/dags/{dag_id}").status_code == 200

        if not poll_until(parsed, DAG_PARSE_TIMEOUT, POLL_INTERVAL):
            errors = self._json("GET", "/importErrors")
            raise AssertionError(f"{dag_id} not parsed in {DAG_PARSE_TIMEOUT} s: {errors}")

    def unpause(self, dag_id: str) -> None:
        self._json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str) -> str:
        return self._json("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})[
            "dag_run_id"
        ]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def wait_until_finished(self, dag_id: str, run_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in FINISHED else None

        run = poll_until(finished, RUN_TIMEOUT, POLL_INTERVAL)
        if run is None:
            raise AssertionError(f"{dag_id} {run_id} not finished after {RUN_TIMEOUT} s")
        return run

    def wait_for_new_run(self, dag_id: str, known: set[str]) -> dict[str, Any]:
        def new_run() -> dict[str, Any] | None:
            new = [run for run in self.runs(dag_id) if run["dag_run_id"] not in known]
            return new[0] if new else None

        run = poll_until(new_run, RUN_TIMEOUT, POLL_INTERVAL)
        if run is None:
            raise AssertionError(f"no new {dag_id} run within {RUN_TIMEOUT} s")
        return run

    def wait_for_retraining(self, inference_run: str) -> dict[str, Any]:
        """The example_training run that the drift Asset event of `inference_run` created."""
        query = {"source_dag_id": INFERENCE_DAG, "source_run_id": inference_run}

        def created() -> dict[str, Any] | None:
            response = self.client.get("/assets/events", params=query)
            if response.status_code >= 500:  # a busy SQLite under the shared stack: ask again
                return None
            if response.is_error:
                raise AssertionError(f"GET /assets/events: {response.status_code} {response.text}")
            runs = [
                run
                for event in response.json()["asset_events"]
                for run in event["created_dagruns"]
                if run["dag_id"] == TRAINING_DAG
            ]
            return runs[0] if runs else None

        run = poll_until(created, RUN_TIMEOUT, POLL_INTERVAL)
        if run is None:
            raise AssertionError(f"no {TRAINING_DAG} run created by {inference_run}'s drift event")
        return run

    def task_report(self, dag_id: str, run_id: str) -> str:
        """Task states, with the end of the log of each task that did not succeed."""
        base = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        lines = []
        for task in self._json("GET", base)["task_instances"]:
            lines.append(f"{task['task_id']}: {task['state']}")
            if task["state"] != "success" and task.get("try_number"):
                log = self.client.get(
                    f"{base}/{task['task_id']}/logs/{task['try_number']}",
                    headers={"Accept": "application/json"},
                )
                content = log.json().get("content", []) if log.is_success else [log.text]
                lines.extend(f"    {_log_line(item)}" for item in content[-30:])
        return "\n".join(lines)

    def assert_succeeded(self, dag_id: str, run: dict[str, Any]) -> None:
        """The run succeeded, and each task on its first try: the example DAGs' retries would
        otherwise hide a task that fails once."""
        if run["state"] != "success":
            report = self.task_report(dag_id, run["dag_run_id"])
            raise AssertionError(f"{dag_id} {run['dag_run_id']} {run['state']}:\n{report}")
        base = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances"
        retried = {
            task["task_id"]: task["try_number"]
            for task in self._json("GET", base)["task_instances"]
            if task["try_number"] != 1
        }
        if retried:
            logs = "\n".join(
                f"{task_id} try 1:\n{self.task_log(dag_id, run['dag_run_id'], task_id, 1)}"
                for task_id in retried
            )
            raise AssertionError(f"{dag_id} needed more than one try: {retried}\n{logs}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        base = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return {
            task["task_id"]: task["state"] for task in self._json("GET", base)["task_instances"]
        }

    def result(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """What a task returned (its XCom `return_value`)."""
        value = self._json(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        )["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The end of one try's log."""
        log = self.client.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            headers={"Accept": "application/json"},
        )
        content = log.json().get("content", []) if log.is_success else [log.text]
        return "\n".join(f"    {_log_line(item)}" for item in content[-30:])


# The stacks the example must work on: an S3 server with the metadata in SQLite or in
# PostgreSQL, and local folders only. A check runs on the stacks where its outcome can differ.
EVERY_STACK = ["stack_on_sqlite", "stack_on_postgres", "stack_without_object_store"]
# Notebooks read the data store and MLflow's API: S3 or local folders, not the database.
EVERY_DATA_STORE = ["stack_on_sqlite", "stack_without_object_store"]
# Task logs are files the api-server reads, whatever the stores.
DEFAULT_STACK = ["stack_on_sqlite"]


@pytest.fixture(scope="module", params=EVERY_STACK)
def any_stack(request: pytest.FixtureRequest) -> Any:
    """One of the stacks; a test narrows the list with `parametrize("any_stack", ...)`."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def stack_env(any_stack: Any) -> Iterator[dict[str, str]]:
    """This process sees the stack's client environment, as tasks and kernels do."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in any_stack.env.items():
            patch.setenv(name, value)
        yield any_stack.env


@pytest.fixture(scope="module")
def pipeline_runs(any_stack: Any, stack_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Trigger example_training once; wait for it and for the inference run its Asset starts."""
    airflow = AirflowApi(
        any_stack.airflow_url, any_stack.airflow_username, any_stack.airflow_password
    )
    for dag_id in (TRAINING_DAG, INFERENCE_DAG):
        airflow.wait_until_parsed(dag_id)
        airflow.unpause(dag_id)
    known_inference_runs = {run["dag_run_id"] for run in airflow.runs(INFERENCE_DAG)}

    training = airflow.wait_until_finished(TRAINING_DAG, airflow.trigger(TRAINING_DAG))
    airflow.assert_succeeded(TRAINING_DAG, training)
    started = airflow.wait_for_new_run(INFERENCE_DAG, known_inference_runs)
    inference = airflow.wait_until_finished(INFERENCE_DAG, started["dag_run_id"])
    airflow.assert_succeeded(INFERENCE_DAG, inference)
    return {"training": training, "inference": inference}


def test_training_succeeds_and_its_asset_triggers_inference(
    pipeline_runs: dict[str, dict[str, Any]],
) -> None:
    assert pipeline_runs["training"]["state"] == "success"
    assert pipeline_runs["inference"]["state"] == "success"
    assert pipeline_runs["inference"]["run_type"] == "asset_triggered"


@pytest.mark.parametrize("any_stack", DEFAULT_STACK, indirect=True)
def test_task_logs_are_readable_through_the_api(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any
) -> None:
    """The stack runs no log servers: the api-server must read task logs from local files."""
    airflow = AirflowApi(
        any_stack.airflow_url, any_stack.airflow_username, any_stack.airflow_password
    )
    run_id = pipeline_runs["training"]["dag_run_id"]
    response = airflow.client.get(
        f"/dags/{TRAINING_DAG}/dagRuns/{run_id}/taskInstances/generate/logs/1",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    lines = [_log_line(item) for item in response.json().get("content", [])]
    assert any(lines), "the task log is empty"
    assert not any("Could not read served logs" in line for line in lines), lines[:20]


@pytest.mark.parametrize("any_stack", DEFAULT_STACK, indirect=True)
def test_task_logs_keep_the_levels_of_mlflows_lines(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any
) -> None:
    """MLflow logs INFO and WARNING lines, and prints some; none may show as an error in a run
    that succeeded (Airflow marks everything a task writes to stderr as an error)."""
    airflow = AirflowApi(
        any_stack.airflow_url, any_stack.airflow_username, any_stack.airflow_password
    )
    entries = []
    for name, dag_id in (("training", TRAINING_DAG), ("inference", INFERENCE_DAG)):
        run_id = pipeline_runs[name]["dag_run_id"]
        base = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        for task in airflow._json("GET", base)["task_instances"]:
            log = airflow._json(
                "GET",
                f"{base}/{task['task_id']}/logs/{task['try_number']}",
                headers={"Accept": "application/json"},
            )
            entries += [item for item in log["content"] if isinstance(item, dict)]
    errors = [item for item in entries if item.get("level") == "error"]
    assert not errors, errors[:10]
    mlflow_levels = {item.get("level") for item in entries if _from_mlflow(item)}
    assert "info" in mlflow_levels, "MLflow's INFO lines reach the task log as info"


def _from_mlflow(item: dict[str, Any]) -> bool:
    return str(item.get("logger", "")).startswith("mlflow.")


def test_registry_has_a_champion_from_the_training_run(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any
) -> None:
    client = MlflowClient(tracking_uri=any_stack.mlflow_url)
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    assert champion.run_id is not None, "the champion was logged from a run"
    run = client.get_run(champion.run_id)
    assert run.data.metrics["best_val_iou"] > 0.8
    assert run.info.start_time >= _epoch_ms(pipeline_runs["training"]["start_date"]) - 1000


def test_model_files_are_in_the_artifact_store(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any
) -> None:
    champion = MlflowClient(tracking_uri=any_stack.mlflow_url).get_model_version_by_alias(
        MODEL_NAME, CHAMPION_ALIAS
    )
    model_id = champion.model_id or str(champion.source).removeprefix("models:/")
    if not any_stack.s3_endpoint:  # artifacts live in a local folder under the state dir
        root = Path(any_stack.state_dir) / "mlflow" / "artifacts"
        keys = [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()]
    else:
        keys = _bucket_keys(any_stack)
    model_files = [key for key in keys if model_id in key]
    assert any(key.endswith("MLmodel") for key in model_files), (model_id, keys[:50])
    assert any(key.endswith("classifier.joblib") for key in model_files)


def test_the_served_champion_predicts_as_the_batch_did(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any, stack_env: dict[str, str]
) -> None:
    """The stack's `serving` answers over HTTP with the champion, as the inference DAG saw."""
    client = MlflowClient(tracking_uri=any_stack.mlflow_url)
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    url = any_stack.env["H2OPS_SERVING_URL"]
    served = wait_until_serving(url, str(champion.version), timeout=120)
    assert served["run_id"] == champion.run_id
    tile = generate_tile("e2e-served", seed=7, size=32)
    mask = predict_served(url, tile.bands[None])[0]
    batch: np.ndarray = np.asarray(load_champion().predict(tile.bands[None]))
    np.testing.assert_array_equal(mask, batch[0])
    assert mask_scores(tile.water_mask, mask)["iou"] > 0.8

    airflow = AirflowApi(
        any_stack.airflow_url, any_stack.airflow_username, any_stack.airflow_password
    )
    run_id = pipeline_runs["inference"]["dag_run_id"]
    check = airflow._json(
        "GET",
        f"/dags/{INFERENCE_DAG}/dagRuns/{run_id}/taskInstances/compare_with_served_model"
        "/xcomEntries/return_value",
    )["value"]
    check = json.loads(check) if isinstance(check, str) else check
    assert check["checked"] is True and check["model_version"] == str(champion.version), check


@pytest.mark.parametrize("any_stack", DEFAULT_STACK, indirect=True)
def test_a_worse_model_is_not_promoted_and_serving_keeps_the_champion(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any, stack_env: dict[str, str]
) -> None:
    """The promotion gate on the stack: a training run on shuffled labels registers a version
    that becomes @challenger; @champion and the served version stay, and no champion Asset
    event starts inference. Cost: one more training run on the default stack (about 30-60 s).
    """
    client = MlflowClient(tracking_uri=any_stack.mlflow_url)
    champion = str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    airflow = AirflowApi(
        any_stack.airflow_url, any_stack.airflow_username, any_stack.airflow_password
    )
    run_id = airflow._json(
        "POST",
        f"/dags/{TRAINING_DAG}/dagRuns",
        json={"logical_date": None, "conf": {"shuffle_labels": True}},
    )["dag_run_id"]
    airflow.assert_succeeded(TRAINING_DAG, airflow.wait_until_finished(TRAINING_DAG, run_id))

    result = airflow._json(
        "GET",
        f"/dags/{TRAINING_DAG}/dagRuns/{run_id}/taskInstances/register/xcomEntries/return_value",
    )["value"]
    gate = (json.loads(result) if isinstance(result, str) else result)["gate"]
    assert (gate["promoted"], gate["alias"], gate["champion_version"]) == (
        False,
        CHALLENGER_ALIAS,
        champion,
    ), gate
    assert gate["new_score"] < gate["champion_score"]
    # No new champion, no champion Asset event: publish_champion skipped, inference not started.
    assert airflow.task_states(TRAINING_DAG, run_id)["publish_champion"] == "skipped"
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version) == champion
    challenger = client.get_model_version_by_alias(MODEL_NAME, CHALLENGER_ALIAS)
    assert str(challenger.version) == gate["new_version"]
    assert challenger.tags["gate.promoted"] == "False"
    served = wait_until_serving(any_stack.env["H2OPS_SERVING_URL"], champion, timeout=60)
    assert served["version"] == champion


@pytest.mark.parametrize("any_stack", DEFAULT_STACK, indirect=True)
def test_a_drifted_batch_retrains_and_the_gate_moves_the_served_champion(
    pipeline_runs: dict[str, dict[str, Any]], any_stack: Any, stack_env: dict[str, str]
) -> None:
    """The loop on the stack: train -> serve (pipeline_runs) -> a hazy batch -> drift detected
    -> its Asset event schedules example_training -> the gate promotes the retrained model
    (same data, same seed: a tie, which goes to the newer) -> serving follows @champion.
    The pipeline's own batch was normal and started nothing. Cost: one inference and one
    training run on the default stack (about a minute); the inference the new champion
    starts (a normal batch) is not awaited."""
    airflow = AirflowApi(
        any_stack.airflow_url, any_stack.airflow_username, any_stack.airflow_password
    )
    normal_run = pipeline_runs["inference"]["dag_run_id"]
    normal = airflow.result(INFERENCE_DAG, normal_run, "monitor")
    assert normal["drifted"] is False, normal
    assert airflow.task_states(INFERENCE_DAG, normal_run)["signal_drift"] == "skipped"
    client = MlflowClient(tracking_uri=any_stack.mlflow_url)
    champion = str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    known_trainings = {run["dag_run_id"] for run in airflow.runs(TRAINING_DAG)}

    hazy_run = airflow._json(
        "POST",
        f"/dags/{INFERENCE_DAG}/dagRuns",
        json={"logical_date": None, "conf": {"haze": 0.3}},
    )["dag_run_id"]
    airflow.assert_succeeded(INFERENCE_DAG, airflow.wait_until_finished(INFERENCE_DAG, hazy_run))
    drift = airflow.result(INFERENCE_DAG, hazy_run, "monitor")
    assert drift["drifted"] is True and drift["max_psi_band"] == "blue", drift
    assert drift["max_psi"] > drift["threshold"]
    batch = batch_id_from(hazy_run)
    report = json.loads(
        open_data_store().get_bytes(f"{PREDICTIONS_PREFIX}/{batch}/drift.json").decode()
    )
    assert report["bands"]["blue"]["psi"] == pytest.approx(drift["max_psi"])
    monitoring = client.get_run(drift["mlflow_run_id"])
    assert monitoring.data.metrics["psi_blue"] == pytest.approx(drift["max_psi"])
    assert monitoring.data.params["batch_id"] == batch

    retraining = airflow.wait_for_retraining(hazy_run)
    assert retraining["run_id"] not in known_trainings
    retrained = airflow.wait_until_finished(TRAINING_DAG, retraining["run_id"])
    assert retrained["run_type"] == "asset_triggered"
    airflow.assert_succeeded(TRAINING_DAG, retrained)
    gate = airflow.result(TRAINING_DAG, retrained["dag_run_id"], "register")["gate"]
    assert (gate["promoted"], gate["champion_version"]) == (True, champion), gate
    new_champion = str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    assert new_champion == gate["new_version"] != champion
    served = wait_until_serving(any_stack.env["H2OPS_SERVING_URL"], new_champion, timeout=120)
    assert served["version"] == new_champion


def _bucket_keys(stack: Any) -> list[str]:
    s3 = s3_client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_inference_wrote_masks_and_statistics(
    pipeline_runs: dict[str, dict[str, Any]], stack_env: dict[str, str]
) -> None:
    batch_id = batch_id_from(pipeline_runs["inference"]["dag_run_id"])
    store = open_data_store()
    keys = store.list_keys(f"{PREDICTIONS_PREFIX}/{batch_id}/")
    assert f"{PREDICTIONS_PREFIX}/{batch_id}/water_statistics.csv" in keys
    # Georeferenced COG masks, one STAC Item each, read back through GDAL (S3 or a folder).
    items = read_predictions(store, f"{PREDICTIONS_PREFIX}/{batch_id}")
    assert len(items) == 3
    assert read_masks(items[0])["water_mask"].shape == (64, 64)
    assert items[0].properties["water_area_km2"] >= 0


@pytest.mark.parametrize("any_stack", EVERY_DATA_STORE, indirect=True)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_top_to_bottom(
    pipeline_runs: dict[str, dict[str, Any]], stack_env: dict[str, str], path: Path
) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute(env={**os.environ, **stack_env})
    except CellExecutionError as error:
        pytest.fail(f"{path.name}: {error}")


def _epoch_ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _log_line(item: Any) -> str:
    return item.get("event", "") if isinstance(item, dict) else str(item)
