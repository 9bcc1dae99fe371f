"""model: scores, the classifier and the registry names."""

from __future__ import annotations

import numpy as np
import pytest

from water_mapping.model.classifier import SEARCH_SPACE, build_water_classifier
from water_mapping.model.metrics import mask_scores
from water_mapping.model.registry import CHAMPION_ALIAS, CHAMPION_MODEL_URI, MODEL_NAME


def test_scores_of_a_partly_right_mask() -> None:
    truth = np.array([[1, 1, 0, 0]])
    predicted = np.array([[1, 0, 1, 0]])

    scores = mask_scores(truth, predicted)

    assert scores["iou"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(0.5)


def test_no_water_predicted_where_there_is_none_is_perfect() -> None:
    empty = np.zeros((3, 3))
    assert set(mask_scores(empty, empty).values()) == {1.0}


def test_scores_refuse_masks_of_different_sizes() -> None:
    with pytest.raises(ValueError, match="pixels"):
        mask_scores(np.zeros(4), np.zeros(5))


def test_every_search_configuration_builds_and_fits() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3))
    labels = (features[:, 0] > 0).astype(np.uint8)
    for params in SEARCH_SPACE:
        classifier = build_water_classifier(**params).fit(features, labels)
        assert classifier.score(features, labels) > 0.9


def test_champion_uri_is_the_registered_name_at_the_alias() -> None:
    assert (MODEL_NAME, CHAMPION_ALIAS) == ("example-water-mask", "champion")
    assert CHAMPION_MODEL_URI == "models:/example-water-mask@champion"
