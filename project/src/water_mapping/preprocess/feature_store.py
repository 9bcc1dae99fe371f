"""Feature sets in the data store: one .npz per tile under `features/<dataset>/`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from water_mapping.dataloader.synthetic_tiles import Tile
from water_mapping.preprocess.pixel_features import FEATURE_NAMES, pixel_features
from water_mapping.utils.data_store import DataStore, get_arrays, put_arrays

FEATURES_PREFIX = "features"


@dataclass(frozen=True)
class FeatureSet:
    """The features and labels of every pixel of one tile."""

    tile_id: str
    features: np.ndarray  # (pixels, len(FEATURE_NAMES)) float32
    labels: np.ndarray  # (pixels,) uint8, 1 = water
    shape: tuple[int, int]  # (rows, columns), to turn pixel vectors back into images

    @property
    def bands(self) -> np.ndarray:
        """The raw bands back as a (band, row, column) tile, for plots."""
        n_bands = FEATURE_NAMES.index("ndwi")
        return self.features[:, :n_bands].T.reshape(n_bands, *self.shape)


def feature_set_of(tile: Tile) -> FeatureSet:
    return FeatureSet(
        tile_id=tile.tile_id,
        features=pixel_features(tile.bands),
        labels=tile.water_mask.reshape(-1).astype(np.uint8),
        shape=tile.shape,
    )


def feature_key(dataset: str, tile_id: str) -> str:
    return f"{FEATURES_PREFIX}/{dataset}/{tile_id}.npz"


def write_feature_set(store: DataStore, dataset: str, feature_set: FeatureSet) -> str:
    """Write one tile's feature set; returns its URL."""
    return put_arrays(
        store,
        feature_key(dataset, feature_set.tile_id),
        features=feature_set.features,
        labels=feature_set.labels,
        shape=np.array(feature_set.shape),
        feature_names=np.array(FEATURE_NAMES),
    )


def read_feature_set(store: DataStore, dataset: str, tile_id: str) -> FeatureSet:
    arrays = get_arrays(store, feature_key(dataset, tile_id))
    stored_names = tuple(str(name) for name in arrays["feature_names"])
    if stored_names != FEATURE_NAMES:
        raise ValueError(
            f"feature set {tile_id} has features {stored_names}, this code expects "
            f"{FEATURE_NAMES}: rebuild the features of dataset {dataset!r}"
        )
    rows, columns = (int(value) for value in arrays["shape"])
    return FeatureSet(tile_id, arrays["features"], arrays["labels"], (rows, columns))


def read_feature_sets(store: DataStore, dataset: str) -> list[FeatureSet]:
    """All feature sets of a dataset, in tile id order."""
    prefix = f"{FEATURES_PREFIX}/{dataset}/"
    names = [key[len(prefix) :] for key in store.list_keys(prefix)]
    tile_ids = [name[: -len(".npz")] for name in names if name.endswith(".npz") and "/" not in name]
    if not tile_ids:
        raise FileNotFoundError(
            f"no feature sets under {store.base_url}/{prefix}: run the preprocessing step first"
        )
    return [read_feature_set(store, dataset, tile_id) for tile_id in tile_ids]
