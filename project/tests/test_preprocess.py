"""preprocess: spectral indices, per-pixel features and the feature store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from water_mapping.dataloader.synthetic_tiles import (
    BAND_NAMES,
    CLEAR_WATER,
    VEGETATION,
    generate_tile,
    generate_tiles,
)
from water_mapping.preprocess.feature_store import (
    feature_key,
    feature_set_of,
    read_feature_set,
    read_feature_sets,
    write_feature_set,
)
from water_mapping.preprocess.pixel_features import FEATURE_NAMES, pixel_features
from water_mapping.preprocess.spectral_indices import mndwi, ndvi, ndwi, normalized_difference
from water_mapping.utils.data_store import open_data_store, put_arrays


def spectrum_tile(spectrum: np.ndarray) -> np.ndarray:
    return np.broadcast_to(spectrum[:, None, None], (len(BAND_NAMES), 2, 2)).astype(np.float32)


def test_normalized_difference_is_zero_where_there_is_no_signal() -> None:
    result = normalized_difference(np.array([0.0, 0.3]), np.array([0.0, 0.1]))
    np.testing.assert_allclose(result, [0.0, 0.5])


def test_water_indices_are_positive_over_water_and_negative_over_vegetation() -> None:
    water, vegetation = spectrum_tile(CLEAR_WATER), spectrum_tile(VEGETATION)
    for index in (ndwi, mndwi):
        assert (index(water) > 0).all()
        assert (index(vegetation) < 0).all()
    assert (ndvi(vegetation) > 0.5).all()
    assert (ndvi(water) < 0).all()


def test_pixel_features_are_bands_then_indices_row_major() -> None:
    tile = generate_tile("t", seed=0, size=8)
    features = pixel_features(tile.bands)

    assert features.shape == (64, len(FEATURE_NAMES))
    assert features.dtype == np.float32
    assert FEATURE_NAMES[:5] == BAND_NAMES
    np.testing.assert_array_equal(features[:, 1], tile.bands[1].reshape(-1))
    np.testing.assert_allclose(
        features[:, FEATURE_NAMES.index("mndwi")], mndwi(tile.bands).reshape(-1)
    )


def test_pixel_features_reject_bands_in_the_wrong_layout() -> None:
    with pytest.raises(ValueError, match="expected bands shaped"):
        pixel_features(np.zeros((8, 8, 5), dtype=np.float32))


def test_feature_sets_round_trip_and_give_the_bands_back(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    tiles = generate_tiles(2, seed=0, size=8)
    for tile in tiles:
        write_feature_set(store, "training", feature_set_of(tile))

    loaded = read_feature_sets(store, "training")

    assert [feature_set.tile_id for feature_set in loaded] == ["tile_000", "tile_001"]
    assert loaded[0].shape == (8, 8)
    np.testing.assert_array_equal(loaded[0].labels, tiles[0].water_mask.reshape(-1))
    np.testing.assert_array_equal(loaded[1].bands, tiles[1].bands)


def test_feature_sets_from_other_code_are_refused(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    put_arrays(
        store,
        feature_key("old", "tile_000"),
        features=np.zeros((4, 2), dtype=np.float32),
        labels=np.zeros(4, dtype=np.uint8),
        shape=np.array([2, 2]),
        feature_names=np.array(["ndwi", "ndvi"]),
    )
    with pytest.raises(ValueError, match="rebuild the features"):
        read_feature_set(store, "old", "tile_000")


def test_missing_feature_sets_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="preprocessing step"):
        read_feature_sets(open_data_store(tmp_path.as_uri()), "training")
