"""postprocess: mask clean-up and water statistics."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from water_mapping.postprocess.mask_cleanup import clean_water_mask
from water_mapping.postprocess.water_statistics import (
    pixel_area_km2,
    statistics_table,
    water_statistics,
)


def test_clean_up_removes_speckle_and_fills_pinholes_but_keeps_water_bodies() -> None:
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[2:10, 2:10] = 1  # a lake
    mask[5, 5] = 0  # a pinhole in it
    mask[15, 15] = 1  # an isolated false positive

    cleaned = clean_water_mask(mask)

    expected = np.zeros_like(mask)
    expected[2:10, 2:10] = 1
    np.testing.assert_array_equal(cleaned, expected)
    assert cleaned.dtype == np.uint8


def test_clean_up_of_an_empty_mask_is_empty() -> None:
    assert clean_water_mask(np.zeros((5, 5))).sum() == 0


def test_statistics_count_pixels_area_and_separate_water_bodies() -> None:
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[0:2, 0:2] = 1
    mask[6:9, 6:9] = 1

    stats = water_statistics("tile_007", mask)

    assert stats["tile_id"] == "tile_007"
    assert stats["water_pixels"] == 13
    assert stats["water_fraction"] == pytest.approx(0.13)
    assert stats["water_area_km2"] == pytest.approx(13 * 100 / 1e6)  # 10 m pixels
    assert stats["water_bodies"] == 2


def test_statistics_table_has_one_row_per_tile_in_tile_order() -> None:
    rows = [water_statistics(tile_id, np.ones((2, 2))) for tile_id in ("b", "a")]
    table = statistics_table(rows)
    assert table["tile_id"].tolist() == ["a", "b"]
    assert table["water_pixels"].tolist() == [4, 4]


def test_pixel_area_follows_the_geotransform_and_the_crs_unit() -> None:
    assert pixel_area_km2("EPSG:32633", Affine(10, 0, 0, 0, -10, 0)) == pytest.approx(1e-4)
    assert pixel_area_km2("EPSG:32633", Affine(20, 0, 0, 0, -20, 0)) == pytest.approx(4e-4)
    # US survey feet: a 100 ft pixel is about 929 m².
    feet = pixel_area_km2("EPSG:2263", Affine(100, 0, 0, 0, -100, 0))
    assert feet == pytest.approx(929.03e-6, rel=1e-3)


def test_pixel_area_in_degrees_says_to_reproject() -> None:
    with pytest.raises(ValueError, match=r"projected CRS.*reproject"):
        pixel_area_km2("EPSG:4326", Affine(0.0001, 0, 0, 0, -0.0001, 0))
