"""The promotion gate: its rule alone, and against a real MLflow registry (SQLite store)."""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier

from water_mapping.dataloader.synthetic_tiles import generate_tiles
from water_mapping.model.classifier import build_water_classifier
from water_mapping.model.promotion import decide, register_and_gate
from water_mapping.model.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS
from water_mapping.model_pipeline.water_mask_model import log_water_mask_model
from water_mapping.preprocess.pixel_features import pixel_features


def test_the_first_model_is_promoted() -> None:
    assert decide(0.2, None, 0.01) == (True, "first model: no champion yet")


def test_a_model_must_beat_the_champion_by_the_margin() -> None:
    assert decide(0.91, 0.90, 0.01)[0] is True
    assert decide(0.905, 0.90, 0.01)[0] is False
    assert decide(0.90, 0.90, 0.0)[0] is True  # a tie goes to the newer model
    assert decide(0.899, 0.90, 0.0)[0] is False


def test_a_bad_margin_says_what_to_give() -> None:
    with pytest.raises(ValueError, match=r"margin 1\.5 is not in \[0, 1\).*e\.g\. 0\.01"):
        decide(0.9, 0.8, 1.5)


def test_a_worse_model_becomes_challenger_and_the_champion_stays(
    mlflow_experiment: Callable[..., str],
) -> None:
    """Cost: about 3 s (two models logged and scored against a SQLite MLflow)."""
    mlflow.set_experiment(mlflow_experiment("gate-test"))
    tiles = generate_tiles(3, seed=0, size=24)
    features = np.concatenate([pixel_features(tile.bands) for tile in tiles])
    labels = np.concatenate([tile.water_mask.reshape(-1) for tile in tiles])
    good = build_water_classifier(n_estimators=5, max_depth=6).fit(features, labels)
    worse = DummyClassifier(strategy="constant", constant=0).fit(features, labels)  # no water
    validation = generate_tiles(2, seed=99, size=24)
    uris = []
    for classifier in (good, worse):
        with mlflow.start_run():
            uris.append(log_water_mask_model(classifier, tiles[0].bands).model_uri)

    first = register_and_gate(uris[0], validation, margin=0.01, name="gate-model")
    second = register_and_gate(uris[1], validation, margin=0.01, name="gate-model")

    client = MlflowClient()
    assert (first.promoted, first.champion_version) == (True, None)
    assert (second.promoted, second.alias, second.champion_version) == (
        False,
        CHALLENGER_ALIAS,
        "1",
    )
    assert second.champion_score is not None and second.new_score < second.champion_score
    assert str(client.get_model_version_by_alias("gate-model", CHAMPION_ALIAS).version) == "1"
    assert str(client.get_model_version_by_alias("gate-model", CHALLENGER_ALIAS).version) == "2"
    tags = client.get_model_version("gate-model", "2").tags
    assert tags["gate.promoted"] == "False"
    assert float(tags["gate.champion_score"]) == pytest.approx(second.champion_score)
    run_id = client.get_model_version("gate-model", "2").run_id
    assert run_id is not None
    metrics = client.get_run(run_id).data.metrics
    assert metrics["gate_new_iou"] == pytest.approx(second.new_score)
