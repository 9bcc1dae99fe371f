"""Normalised-difference indices that separate water from land in multispectral imagery."""

from __future__ import annotations

import numpy as np

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES

BAND_INDEX = {name: index for index, name in enumerate(BAND_NAMES)}


def normalized_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(first - second) / (first + second), 0 where both are 0 (no signal, no index)."""
    total = first + second
    safe_total = np.where(total == 0, 1.0, total)
    return np.where(total == 0, 0.0, (first - second) / safe_total).astype(np.float32)


def ndwi(bands: np.ndarray) -> np.ndarray:
    """McFeeters' NDWI (green vs NIR): positive over open water."""
    return normalized_difference(bands[BAND_INDEX["green"]], bands[BAND_INDEX["nir"]])


def mndwi(bands: np.ndarray) -> np.ndarray:
    """Xu's modified NDWI (green vs SWIR1): suppresses built-up and soil better than NDWI."""
    return normalized_difference(bands[BAND_INDEX["green"]], bands[BAND_INDEX["swir1"]])


def ndvi(bands: np.ndarray) -> np.ndarray:
    """NDVI (NIR vs red): high over vegetation, negative over water."""
    return normalized_difference(bands[BAND_INDEX["nir"]], bands[BAND_INDEX["red"]])
