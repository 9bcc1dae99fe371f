"""Training and validation data from the feature store, split by tile.

Splitting by tile, not by pixel, keeps neighbouring (near-identical) pixels out of both
sides, so validation scores say how the model does on a tile it has never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

from water_mapping.preprocess.feature_store import FeatureSet, read_feature_sets
from water_mapping.utils.data_store import DataStore


@dataclass(frozen=True)
class TrainingData:
    features: np.ndarray  # (pixels, features) sampled from the training tiles
    labels: np.ndarray  # (pixels,)
    validation: list[FeatureSet]  # whole tiles, scored as masks


class SplitOptions(TypedDict, total=False):
    """`split_by_tile`'s options, so `load_training_data` passes them on with their types."""

    validation_fraction: float
    max_pixels_per_tile: int
    seed: int


def split_by_tile(
    feature_sets: list[FeatureSet],
    validation_fraction: float = 0.25,
    max_pixels_per_tile: int = 2000,
    seed: int = 0,
) -> TrainingData:
    """The last tiles (at least one) validate; the others give a random pixel sample each."""
    if len(feature_sets) < 2:
        raise ValueError(f"need at least 2 tiles to train and validate, got {len(feature_sets)}")
    n_validation = max(1, round(len(feature_sets) * validation_fraction))
    training_sets = feature_sets[:-n_validation]
    rng = np.random.default_rng(seed)
    samples = [_sample(feature_set, max_pixels_per_tile, rng) for feature_set in training_sets]
    return TrainingData(
        features=np.concatenate([features for features, _ in samples]),
        labels=np.concatenate([labels for _, labels in samples]),
        validation=feature_sets[-n_validation:],
    )


def load_training_data(
    store: DataStore, dataset: str, **split_options: Unpack[SplitOptions]
) -> TrainingData:
    """Read a dataset's feature sets and split them; see `split_by_tile` for the options."""
    return split_by_tile(read_feature_sets(store, dataset), **split_options)


def _sample(
    feature_set: FeatureSet, max_pixels: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n_pixels = len(feature_set.labels)
    chosen = rng.choice(n_pixels, size=min(max_pixels, n_pixels), replace=False)
    return feature_set.features[chosen], feature_set.labels[chosen]
