"""workflow_steps: the DAG steps chained by hand, on a local folder instead of S3."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from water_mapping import workflow_steps
from water_mapping.utils.data_store import get_arrays, open_data_store


def test_batch_ids_from_airflow_run_ids_are_safe_as_keys() -> None:
    run_id = "asset_triggered__2026-01-02T03:04:05.678+00:00"
    assert workflow_steps.batch_id_from(run_id) == "asset_triggered__2026-01-02T03-04-05.678-00-00"


def test_steps_run_the_example_on_a_local_folder(
    tmp_path: Path, mlflow_experiment: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_url = (tmp_path / "data").as_uri()
    monkeypatch.setenv("H2OPS_DATA_URL", data_url)
    experiment = mlflow_experiment("steps-on-a-local-folder")

    dataset = workflow_steps.generate_training_tiles("small", n_tiles=4, tile_size=32)
    assert workflow_steps.build_features(dataset) == "small"
    training = workflow_steps.train_water_classifier(dataset, experiment_name=experiment)
    incoming = workflow_steps.receive_new_tiles("batch-1", n_tiles=2, tile_size=32)
    summary = workflow_steps.predict_water_masks(
        incoming, "batch-1", model_uri=training["model_uri"]
    )

    json.dumps([training, summary])  # Airflow passes them on as XCom
    assert incoming == "incoming/batch-1"
    assert training["best_scores"]["val_iou"] > 0.5
    store = open_data_store()
    assert store.list_keys("predictions/batch-1/") == [
        "predictions/batch-1/tile_000.npz",
        "predictions/batch-1/tile_001.npz",
        "predictions/batch-1/water_statistics.csv",
    ]
    assert get_arrays(store, "predictions/batch-1/tile_000.npz")["water_mask"].shape == (32, 32)
    table = pd.read_csv(io.BytesIO(store.get_bytes("predictions/batch-1/water_statistics.csv")))
    assert table["tile_id"].tolist() == ["tile_000", "tile_001"]
    assert summary["statistics_url"] == f"{data_url}/predictions/batch-1/water_statistics.csv"


def test_new_batches_get_different_tiles_and_a_rerun_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2OPS_DATA_URL", tmp_path.as_uri())
    store = open_data_store()

    def bands_of(batch: str) -> np.ndarray:
        workflow_steps.receive_new_tiles(batch, n_tiles=1, tile_size=16)
        return get_arrays(store, f"raw/incoming/{batch}/tile_000.npz")["bands"]

    first = bands_of("a")
    np.testing.assert_array_equal(bands_of("a"), first)
    assert not np.array_equal(bands_of("b"), first)
