"""The DAGs run in-process with dag.test(): a real S3 server (rclone) and a SQLite MLflow store.

This is the training pipeline as Airflow runs it, minus the scheduler: the tasks, XComs,
the Asset event, the S3 layout and the registry alias are the real ones.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from rio_cogeo.cogeo import cog_validate

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES
from water_mapping.dataloader.tile_store import read_tiles
from water_mapping.model.registry import CHAMPION_ALIAS, CHAMPION_MODEL_URI, MODEL_NAME
from water_mapping.monitoring.signals import DRIFT_ASSET_URI, MONITORING_EXPERIMENT
from water_mapping.postprocess.prediction_store import read_predictions
from water_mapping.train.hyperparameter_search import EXPERIMENT_NAME
from water_mapping.utils.data_store import open_data_store
from water_mapping.utils.stac import asset_href
from water_mapping.workflow_steps import PREDICTIONS_PREFIX

if TYPE_CHECKING:
    from devtools.testing import S3Server

pytestmark = pytest.mark.mlflow_experiment(EXPERIMENT_NAME, MONITORING_EXPERIMENT)
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


def test_s3_store_keeps_its_keys_under_the_url_prefix(s3_data_env: S3Server) -> None:
    store = open_data_store("s3://data/prefix-test")
    url = store.put_bytes("a/b.bin", b"x")

    assert url == "s3://data/prefix-test/a/b.bin"
    assert store.list_keys("a/") == ["a/b.bin"]
    assert store.get_bytes("a/b.bin") == b"x"
    listing = s3_data_env.client().list_objects_v2(Bucket="data", Prefix="prefix-test/")
    assert [item["Key"] for item in listing["Contents"]] == ["prefix-test/a/b.bin"]


def test_training_registers_a_champion_and_its_asset_feeds_inference(
    dag_bag: Any, pipeline_env: S3Server
) -> None:
    training_run = dag_bag.dags["example_training"].test()

    assert training_run.state == "success"
    data = open_data_store()
    # Read back through GDAL from the stack's S3: 8 STAC Items of COG scenes.
    assert [tile.tile_id for tile in read_tiles(data, "training")][-1] == "tile_007"
    assert len(data.list_keys("features/training/")) == 8

    client = MlflowClient()
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    assert champion.run_id is not None, "the champion was logged from a run"
    parent = client.get_run(champion.run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert len(children) >= 2
    assert parent.data.metrics["best_val_iou"] > 0.8
    model_files = _keys(pipeline_env, "mlflow")
    model_id = champion.model_id or str(champion.source).removeprefix("models:/")
    assert any(model_id in key and key.endswith("MLmodel") for key in model_files), (
        champion.source,
        model_files,
    )
    assert training_run.run_id in [
        event["source_run_id"] for event in _asset_events(CHAMPION_MODEL_URI)
    ]

    inference_run = dag_bag.dags["example_inference"].test()

    assert inference_run.state == "success"
    batch_prefix = f"{PREDICTIONS_PREFIX}/"
    predictions = [key for key in data.list_keys(batch_prefix) if key.endswith(".csv")]
    assert len(predictions) == 1
    statistics = pd.read_csv(io.BytesIO(data.get_bytes(predictions[0])))
    assert len(statistics) == 3
    assert statistics["iou_vs_truth"].mean() > 0.8
    batch = predictions[0].rsplit("/", 2)[1]
    masks = read_predictions(data, f"{PREDICTIONS_PREFIX}/{batch}")
    mask_href = asset_href(masks[0], "water_mask")
    assert mask_href.startswith("s3://data/predictions/"), mask_href
    assert cog_validate(mask_href, quiet=True)[0]

    # Monitoring: a normal batch does not drift, so no drift event (no retraining loop).
    drift = json.loads(data.get_bytes(f"{PREDICTIONS_PREFIX}/{batch}/drift.json"))
    assert drift["drifted"] is False and set(drift["bands"]) == set(BAND_NAMES), drift
    assert data.get_bytes(f"{PREDICTIONS_PREFIX}/{batch}/drift.png").startswith(b"\x89PNG")
    assert _task_states(inference_run.run_id)["signal_drift"] == "skipped"
    assert _asset_events(DRIFT_ASSET_URI) == []
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    assert experiment is not None
    monitoring = client.search_runs([experiment.experiment_id])
    assert [run.data.params["batch_id"] for run in monitoring] == [batch]
    assert set(monitoring[0].data.metrics) >= {f"psi_{name}" for name in BAND_NAMES}

    # A hazy batch drifts: its drift event (what will schedule training) names the batch.
    hazy_run = dag_bag.dags["example_inference"].test(run_conf={"haze": 0.3})

    assert hazy_run.state == "success"
    assert _task_states(hazy_run.run_id)["signal_drift"] == "success"
    [event] = _asset_events(DRIFT_ASSET_URI)
    assert event["source_run_id"] == hazy_run.run_id
    assert event["extra"]["max_psi_band"] == "blue", event


def _keys(server: S3Server, bucket: str) -> list[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _task_states(run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tasks = session.scalars(select(TaskInstance).where(TaskInstance.run_id == run_id))
        return {task.task_id: str(task.state) for task in tasks}


def _asset_events(uri: str) -> list[dict[str, Any]]:
    """Events of the Asset `uri`, from Airflow's database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        )
        return [
            {
                "source_dag_id": event.source_dag_id,
                "source_run_id": event.source_run_id,
                "extra": event.extra,
            }
            for event in events
        ]
