"""workflow_steps: the DAG steps chained by hand, on a local folder instead of S3."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from water_mapping import workflow_steps
from water_mapping.dataloader.synthetic_tiles import TILE_CRS, tile_transform
from water_mapping.dataloader.tile_store import read_tiles
from water_mapping.postprocess.prediction_store import read_masks, read_predictions
from water_mapping.utils.data_store import open_data_store
from water_mapping.utils.stac import asset_href


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
    predictions = read_predictions(store, "predictions/batch-1")
    assert [item.id for item in predictions] == ["tile_000", "tile_001"]
    masks = read_masks(predictions[0])
    assert masks["water_mask"].shape == masks["raw_water_mask"].shape == (32, 32)
    mask_file = Path(asset_href(predictions[0], "water_mask"))
    with rasterio.open(mask_file) as mask:  # on the scene's own grid
        assert (mask.crs.to_string(), mask.transform) == (TILE_CRS, tile_transform(0, 32))
    table = pd.read_csv(io.BytesIO(store.get_bytes("predictions/batch-1/water_statistics.csv")))
    assert table["tile_id"].tolist() == ["tile_000", "tile_001"]
    # 10 m pixels: 1e-4 km² each.
    assert table["water_area_km2"].tolist() == pytest.approx(
        (table["water_pixels"] * 1e-4).tolist()
    )
    assert predictions[0].properties["water_area_km2"] == table["water_area_km2"][0]
    assert summary["statistics_url"] == f"{data_url}/predictions/batch-1/water_statistics.csv"


def test_new_batches_get_different_tiles_and_a_rerun_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2OPS_DATA_URL", tmp_path.as_uri())
    store = open_data_store()

    def bands_of(batch: str) -> np.ndarray:
        workflow_steps.receive_new_tiles(batch, n_tiles=1, tile_size=16)
        return read_tiles(store, f"incoming/{batch}")[0].bands

    first = bands_of("a")
    np.testing.assert_array_equal(bands_of("a"), first)
    assert not np.array_equal(bands_of("b"), first)


def test_a_new_labelled_data_event_names_the_dataset_training_learns_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2OPS_DATA_URL", (tmp_path / "data").as_uri())
    labelled = workflow_steps.generate_training_tiles("labelled-2026-12", n_tiles=2, tile_size=16)
    events = [{"dataset": "older-delivery"}, {"dataset": labelled}, {"note": "no dataset"}]
    assert workflow_steps.training_dataset(events) == "labelled-2026-12"
    assert not (tmp_path / "data" / "raw" / workflow_steps.TRAINING_DATASET).exists()

    with pytest.raises(ValueError, match=r"names dataset 'never-written'.*write them there first"):
        workflow_steps.training_dataset([{"dataset": "never-written"}])

    # No labelled data named (a manual run, a drift event): synthetic tiles, as before.
    assert workflow_steps.training_dataset([]) == workflow_steps.TRAINING_DATASET
    assert read_tiles(open_data_store(), workflow_steps.TRAINING_DATASET)
