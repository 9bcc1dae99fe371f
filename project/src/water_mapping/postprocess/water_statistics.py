"""Water area per tile: the numbers a hydrologist reads off a mask."""

from __future__ import annotations

import numpy as np
import pandas as pd
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

SENTINEL2_PIXEL_AREA_KM2 = 10.0 * 10.0 / 1e6


def pixel_area_km2(crs: str | CRS, transform: Affine) -> float:
    """The ground area of one pixel, from the geotransform in the CRS's linear unit.

    Only a projected CRS has a pixel size in metres (or feet); for degrees, reproject first.
    """
    crs = CRS.from_user_input(crs)
    if not crs.is_projected:
        raise ValueError(
            f"pixel area needs a projected CRS (e.g. the scene's UTM zone), got {crs}: "
            "reproject the mask (rasterio.warp) before computing areas"
        )
    _unit, metres_per_unit = crs.linear_units_factor
    area_in_units = abs(transform.a * transform.e - transform.b * transform.d)
    return area_in_units * metres_per_unit**2 / 1e6


def water_statistics(
    tile_id: str, mask: np.ndarray, pixel_area: float = SENTINEL2_PIXEL_AREA_KM2
) -> dict[str, float | int | str]:
    """Water pixels, fraction, area in km² and number of separate water bodies of one tile;
    `pixel_area` in km² (see `pixel_area_km2`)."""
    water = np.asarray(mask).astype(bool)
    _, n_water_bodies = ndimage.label(water, structure=np.ones((3, 3)))
    water_pixels = int(water.sum())
    return {
        "tile_id": tile_id,
        "water_pixels": water_pixels,
        "water_fraction": water_pixels / water.size if water.size else 0.0,
        "water_area_km2": water_pixels * pixel_area,
        "water_bodies": int(n_water_bodies),
    }


def statistics_table(rows: list[dict[str, float | int | str]]) -> pd.DataFrame:
    """One row per tile, in tile id order."""
    return pd.DataFrame(rows).sort_values("tile_id").reset_index(drop=True)
