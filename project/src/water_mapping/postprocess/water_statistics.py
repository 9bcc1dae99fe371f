"""Water area per tile: the numbers a hydrologist reads off a mask."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

SENTINEL2_PIXEL_SIZE_M = 10.0


def water_statistics(
    tile_id: str, mask: np.ndarray, pixel_size_m: float = SENTINEL2_PIXEL_SIZE_M
) -> dict[str, float | int | str]:
    """Water pixels, fraction, area in km² and number of separate water bodies of one tile."""
    water = np.asarray(mask).astype(bool)
    _, n_water_bodies = ndimage.label(water, structure=np.ones((3, 3)))
    water_pixels = int(water.sum())
    return {
        "tile_id": tile_id,
        "water_pixels": water_pixels,
        "water_fraction": water_pixels / water.size if water.size else 0.0,
        "water_area_km2": water_pixels * pixel_size_m**2 / 1e6,
        "water_bodies": int(n_water_bodies),
    }


def statistics_table(rows: list[dict[str, float | int | str]]) -> pd.DataFrame:
    """One row per tile, in tile id order."""
    return pd.DataFrame(rows).sort_values("tile_id").reset_index(drop=True)
