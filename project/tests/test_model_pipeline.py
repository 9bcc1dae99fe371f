"""model_pipeline: the pyfunc takes raw bands and returns masks; registry aliases."""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.ensemble import RandomForestClassifier

from water_mapping.dataloader.synthetic_tiles import generate_tile, generate_tiles
from water_mapping.model.classifier import build_water_classifier
from water_mapping.model.metrics import mask_scores
from water_mapping.model.registry import load_champion, register_champion
from water_mapping.model_pipeline.water_mask_model import WaterMaskModel, log_water_mask_model
from water_mapping.preprocess.pixel_features import pixel_features


def fitted_classifier() -> RandomForestClassifier:
    tiles = generate_tiles(3, seed=0, size=24)
    features = np.concatenate([pixel_features(tile.bands) for tile in tiles])
    labels = np.concatenate([tile.water_mask.reshape(-1) for tile in tiles])
    return build_water_classifier(n_estimators=5, max_depth=6).fit(features, labels)


def test_model_turns_a_stack_of_tiles_into_one_mask_per_tile() -> None:
    tiles = generate_tiles(2, seed=11, size=32)
    model = WaterMaskModel(fitted_classifier())

    masks = model.predict(None, np.stack([tile.bands for tile in tiles]))

    assert masks.shape == (2, 32, 32)
    assert masks.dtype == np.uint8
    for tile, mask in zip(tiles, masks, strict=True):
        assert mask_scores(tile.water_mask, mask)["iou"] > 0.8


def test_a_single_tile_gives_a_single_mask() -> None:
    tile = generate_tile("t", seed=4, size=16)
    assert WaterMaskModel(fitted_classifier()).predict(None, tile.bands).shape == (16, 16)


def test_logged_model_takes_raw_bands_of_any_tile_size(
    mlflow_experiment: Callable[..., str],
) -> None:
    mlflow.set_experiment(mlflow_experiment("pipeline-test"))
    with mlflow.start_run():
        info = log_water_mask_model(fitted_classifier(), generate_tile("t", seed=0).bands)

    loaded = mlflow.pyfunc.load_model(info.model_uri)
    tile = generate_tile("other-size", seed=5, size=40)

    assert loaded.predict(tile.bands[None]).shape == (1, 40, 40)


def test_registering_moves_the_alias_to_the_new_version(
    mlflow_experiment: Callable[..., str],
) -> None:
    mlflow.set_experiment(mlflow_experiment("registry-test"))
    with mlflow.start_run():
        info = log_water_mask_model(fitted_classifier(), generate_tile("t", seed=0).bands)

    first = register_champion(info.model_uri, name="registry-test-model")
    second = register_champion(info.model_uri, name="registry-test-model")

    alias_version = MlflowClient().get_model_version_by_alias("registry-test-model", "champion")
    assert (first, second, str(alias_version.version)) == ("1", "2", "2")
    champion = load_champion("models:/registry-test-model@champion")
    masks: np.ndarray = np.asarray(champion.predict(generate_tile("t", seed=1, size=8).bands[None]))
    assert masks.shape == (1, 8, 8)
