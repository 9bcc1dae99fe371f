"""dataloader: synthetic tiles are deterministic, plausible and georeferenced, and round-trip
the store as COG scenes in a STAC catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from water_mapping.dataloader.synthetic_tiles import (
    BAND_NAMES,
    TILE_CRS,
    generate_tile,
    generate_tiles,
)
from water_mapping.dataloader.tile_store import (
    BAND_ASSETS,
    REFLECTANCE_SCALE,
    SCENE_CLASS_ASSET,
    list_tile_ids,
    read_scene,
    read_tile,
    read_tiles,
    write_tiles,
)
from water_mapping.utils.data_store import open_data_store
from water_mapping.utils.stac import asset_href


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


def test_tiles_lie_side_by_side_on_the_10_m_utm_grid() -> None:
    first, second = generate_tiles(2, seed=0, size=16)
    assert first.crs == second.crs == TILE_CRS
    assert (first.transform.a, first.transform.e) == (10.0, -10.0)
    assert second.transform.c - first.transform.c == 16 * 10.0
    assert first.transform.f == second.transform.f


def test_tiles_round_trip_as_cog_scenes_in_a_stac_catalog(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    tiles = generate_tiles(2, seed=0, size=16)

    hrefs = write_tiles(store, "training", tiles)
    loaded = read_tiles(store, "training")

    assert hrefs[0] == str(tmp_path / "raw/training/tile_000/tile_000.json")
    assert [tile.tile_id for tile in loaded] == ["tile_000", "tile_001"]
    # Stored as uint16 reflectance * 1e4: equal to a quantisation step.
    np.testing.assert_allclose(loaded[1].bands, tiles[1].bands, atol=REFLECTANCE_SCALE)
    np.testing.assert_array_equal(loaded[1].water_mask, tiles[1].water_mask)
    assert (loaded[1].crs, loaded[1].transform) == (tiles[1].crs, tiles[1].transform)
    assert loaded[1].acquired == tiles[1].acquired
    np.testing.assert_array_equal(
        read_tile(store, "training", "tile_000").water_mask, tiles[0].water_mask
    )


def test_every_scene_file_is_a_valid_cog_with_named_scaled_bands(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    write_tiles(store, "training", generate_tiles(1, seed=0, size=16))

    files = sorted((tmp_path / "raw/training/tile_000").glob("*.tif"))
    assert [path.stem for path in files] == sorted([*BAND_ASSETS, SCENE_CLASS_ASSET])
    for path in files:
        assert cog_validate(str(path), quiet=True)[0], path
    with rasterio.open(tmp_path / "raw/training/tile_000/nir.tif") as nir:
        assert (nir.descriptions, nir.scales, nir.nodata) == (("nir",), (1e-4,), 0)
        assert nir.crs.to_epsg() == 32633


def test_the_catalog_lists_each_scene_as_an_item_with_its_assets(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    write_tiles(store, "training", generate_tiles(2, seed=0, size=16))
    # A dot in a dataset name (Airflow run ids have them) is no file extension.
    write_tiles(store, "incoming/batch.1", generate_tiles(1, seed=1, size=16))

    root = pystac.Catalog.from_file(str(tmp_path / "catalog.json"))
    children = {child.id: child for child in root.get_children()}
    assert set(children) == {"raw-training", "raw-incoming-batch.1"}
    items = list(children["raw-training"].get_items())
    assert [item.id for item in items] == ["tile_000", "tile_001"]
    item = items[0]
    assert item.properties["proj:code"] == TILE_CRS
    assert item.bbox is not None
    lon, lat = item.bbox[0], item.bbox[1]
    assert 12.6 < lon < 12.7 and 53.4 < lat < 53.5  # Lake Müritz, Germany
    assert Path(asset_href(item, "swir16")).is_file()
    assert [item.id for item in children["raw-incoming-batch.1"].get_items()] == ["tile_000"]


def test_read_scene_names_the_missing_assets() -> None:
    item = pystac.Item("x", None, None, datetime(2024, 1, 1, tzinfo=UTC), {})
    with pytest.raises(ValueError, match=r"no asset\(s\) \['blue'"):
        read_scene(item)


def test_a_dataset_lists_only_its_own_tiles_not_nested_ones(tmp_path: Path) -> None:
    store = open_data_store(tmp_path.as_uri())
    write_tiles(store, "incoming", generate_tiles(1, seed=0, size=8))
    write_tiles(store, "incoming/batch-1", generate_tiles(2, seed=1, size=8))

    assert list_tile_ids(store, "incoming") == ["tile_000"]
    assert list_tile_ids(store, "incoming/batch-1") == ["tile_000", "tile_001"]


def test_reading_a_missing_dataset_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate the tiles of dataset 'nothing' first"):
        read_tiles(open_data_store(tmp_path.as_uri()), "nothing")
