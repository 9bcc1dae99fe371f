"""Remove speckle from predicted masks: isolated water pixels and pinholes in water bodies."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def clean_water_mask(
    mask: np.ndarray, min_water_pixels: int = 6, max_hole_pixels: int = 6
) -> np.ndarray:
    """The mask without water objects smaller than `min_water_pixels` and with holes up to
    `max_hole_pixels` filled; objects count as connected through their 8 neighbours.
    """
    water = np.asarray(mask).astype(bool)
    water = _drop_small_objects(water, min_water_pixels)
    land = _drop_small_objects(~water, max_hole_pixels + 1)
    return (~land).astype(np.uint8)


def _drop_small_objects(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    labels, n_objects = ndimage.label(mask, structure=np.ones((3, 3)))
    if n_objects == 0:
        return mask
    sizes = np.bincount(labels.reshape(-1))
    keep = sizes >= min_pixels
    keep[0] = False  # label 0 is the background
    return keep[labels]
