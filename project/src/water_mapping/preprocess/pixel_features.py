"""Per-pixel feature vectors: the raw bands plus the water and vegetation indices."""

from __future__ import annotations

import numpy as np

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES
from water_mapping.preprocess.spectral_indices import mndwi, ndvi, ndwi

FEATURE_NAMES = (*BAND_NAMES, "ndwi", "mndwi", "ndvi")


def pixel_features(bands: np.ndarray) -> np.ndarray:
    """(pixels, features) float32 for a (band, row, column) tile, pixels in row-major order."""
    if bands.ndim != 3 or bands.shape[0] != len(BAND_NAMES):
        raise ValueError(
            f"expected bands shaped ({len(BAND_NAMES)}, rows, columns) in order {BAND_NAMES}, "
            f"got {bands.shape}"
        )
    layers = [*bands, ndwi(bands), mndwi(bands), ndvi(bands)]
    return np.stack([layer.reshape(-1) for layer in layers], axis=1).astype(np.float32)
