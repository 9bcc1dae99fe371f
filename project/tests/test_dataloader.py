"""dataloader: synthetic tiles are deterministic and plausible, and round-trip the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES, generate_tile, generate_tiles
from water_mapping.dataloader.tile_store import list_tile_ids, read_tile, read_tiles, write_tiles
from water_mapping.utils.data_store import open_data_store


def test_same_seed_gives_the_same_tiles() -> None:
    first, second = generate_tiles(3, seed=7), generate_tiles(3, seed=7)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.bands, b.bands)
        np.testing.assert_array_equal(a.water_mask, b.water_mask)


def test_tiles_differ_between_indices_and_seeds() -> None:
    tiles = generate_tiles(2, seed=7)
    other = generate_tiles(1, seed=8)[0]
    assert not np.array_equal(tiles[0].water_mask, tiles[1].water_mask)
    assert not np.array_equal(tiles[0].bands, other.bands)


def test_tile_has_five_reflectance_bands_and_a_binary_mask() -> None:
    tile = generate_tile("t", seed=1, size=48)
    assert tile.bands.shape == (len(BAND_NAMES), 48, 48)
    assert tile.bands.dtype == np.float32
    assert tile.bands.min() >= 0.0 and tile.bands.max() <= 1.0
    assert set(np.unique(tile.water_mask)) <= {0, 1}
    assert tile.shape == (48, 48)


def test_water_covers_some_but_not_most_of_a_tile() -> None:
    fractions = [tile.water_mask.mean() for tile in generate_tiles(8, seed=0)]
    assert all(0.0 < fraction < 0.6 for fraction in fractions)


def test_water_is_dark_in_nir_and_swir_as_on_real_imagery() -> None:
    tile = generate_tile("t", seed=3)
    water = tile.water_mask.astype(bool)
    for band in ("nir", "swir1"):
        values = tile.bands[BAND_NAMES.index(band)]
        assert values[water].mean() < 0.5 * values[~water].mean()


def test_clouds_are_optional_and_cover_about_the_requested_fraction() -> None:
    assert generate_tile("t", seed=2).cloud_mask.sum() == 0
    cloudy = generate_tile("t", seed=2, cloud_cover=0.3)
    assert 0.15 < cloudy.cloud_mask.mean() < 0.45
    np.testing.assert_array_equal(cloudy.water_mask, generate_tile("t", seed=2).water_mask)


def test_tiles_round_trip_through_the_store(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    tiles = generate_tiles(2, seed=0, size=16)

    urls = write_tiles(store, "training", tiles)
    loaded = read_tiles(store, "training")

    assert urls[0] == f"{tmp_path.as_uri()}/raw/training/tile_000.npz"
    assert [tile.tile_id for tile in loaded] == ["tile_000", "tile_001"]
    np.testing.assert_array_equal(loaded[1].bands, tiles[1].bands)
    np.testing.assert_array_equal(
        read_tile(store, "training", "tile_000").water_mask, tiles[0].water_mask
    )


def test_a_dataset_lists_only_its_own_tiles_not_nested_ones(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    write_tiles(store, "incoming", generate_tiles(1, seed=0, size=8))
    write_tiles(store, "incoming/batch-1", generate_tiles(2, seed=1, size=8))

    assert list_tile_ids(store, "incoming") == ["tile_000"]
    assert list_tile_ids(store, "incoming/batch-1") == ["tile_000", "tile_001"]


def test_reading_a_missing_dataset_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate them first"):
        read_tiles(open_data_store(tmp_path.as_uri()), "nothing")
