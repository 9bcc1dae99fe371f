"""train: the split by tile and the hyperparameter search logged as nested MLflow runs."""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from water_mapping.dataloader.synthetic_tiles import generate_tiles
from water_mapping.preprocess.feature_store import FeatureSet, feature_set_of
from water_mapping.train.hyperparameter_search import run_hyperparameter_search
from water_mapping.train.training_data import split_by_tile

TINY_SEARCH_SPACE = (
    {"n_estimators": 3, "max_depth": 2},
    {"n_estimators": 5, "max_depth": 6},
)


def feature_sets(n_tiles: int, size: int = 16) -> list[FeatureSet]:
    return [feature_set_of(tile) for tile in generate_tiles(n_tiles, seed=0, size=size)]


def test_split_keeps_the_last_tiles_whole_for_validation() -> None:
    sets = feature_sets(4)
    data = split_by_tile(sets, validation_fraction=0.25, max_pixels_per_tile=50)

    assert [feature_set.tile_id for feature_set in data.validation] == ["tile_003"]
    assert data.features.shape == (150, sets[0].features.shape[1])
    assert data.labels.shape == (150,)


def test_split_samples_pixels_that_exist_in_the_training_tiles() -> None:
    sets = feature_sets(2, size=8)
    data = split_by_tile(sets, max_pixels_per_tile=10_000)
    assert len(data.labels) == 64  # the whole first tile, no pixel twice
    assert np.unique(data.features, axis=0).shape[0] == 64


def test_split_needs_a_tile_to_train_and_one_to_validate() -> None:
    with pytest.raises(ValueError, match="at least 2 tiles"):
        split_by_tile(feature_sets(1))


def test_search_logs_one_nested_run_per_configuration_and_keeps_the_best(
    mlflow_experiment: Callable[..., str],
) -> None:
    name = mlflow_experiment("search-test")
    data = split_by_tile(feature_sets(4, size=24), max_pixels_per_tile=300)

    result = run_hyperparameter_search(data, search_space=TINY_SEARCH_SPACE, experiment_name=name)

    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, name
    experiment_id = experiment.experiment_id
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    assert len(children) == len(TINY_SEARCH_SPACE)
    for child in children:
        assert {"n_estimators", "max_depth", "model"} <= set(child.data.params)
        assert {"val_iou", "val_f1", "val_precision", "val_recall"} <= set(child.data.metrics)
        artifacts = [artifact.path for artifact in client.list_artifacts(child.info.run_id)]
        assert "validation_tile.png" in artifacts
    best = max(children, key=lambda run: run.data.metrics["val_iou"])
    assert result.best_run_id == best.info.run_id
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["best_val_iou"] == best.data.metrics["val_iou"]
    assert parent.data.tags["best_run_id"] == best.info.run_id

    model = mlflow.pyfunc.load_model(result.model_uri)
    masks = model.predict(data.validation[0].bands[None])
    assert masks.shape == (1, 24, 24)
