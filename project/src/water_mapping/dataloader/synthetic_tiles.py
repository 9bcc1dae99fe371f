"""Deterministic synthetic Sentinel-2-like tiles: lakes and rivers on mixed land, with noise.

Reflectances are typical surface values per band, so the spectral indices behave as on real
imagery: water is dark in NIR and SWIR1, vegetation bright in NIR, bare soil bright in SWIR1.
The same seed always gives the same tile. Tiles lie at a real place, on Sentinel-2's 10 m grid
in UTM zone 33N (the Mecklenburg Lake District, Germany): tile i of a dataset sits i tiles east
of the first, so every dataset revisits the same ground, as repeated acquisitions do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from affine import Affine
from scipy.ndimage import gaussian_filter

BAND_NAMES = ("blue", "green", "red", "nir", "swir1")

# Surface reflectance per band, in BAND_NAMES order.
CLEAR_WATER = np.array([0.07, 0.06, 0.04, 0.02, 0.01])
TURBID_WATER = np.array([0.09, 0.11, 0.10, 0.06, 0.02])
VEGETATION = np.array([0.03, 0.07, 0.04, 0.35, 0.18])
BARE_SOIL = np.array([0.12, 0.16, 0.20, 0.26, 0.32])
DARK_WET_SOIL = np.array([0.05, 0.06, 0.07, 0.10, 0.09])  # a look-alike that makes it a task
CLOUD = np.array([0.42, 0.43, 0.44, 0.46, 0.33])
# A veil of haze (smoke, thin fog): scattered light, strongest in the short wavelengths.
HAZE = np.array([0.30, 0.28, 0.26, 0.22, 0.15])

TILE_CRS = "EPSG:32633"  # WGS 84 / UTM zone 33N
PIXEL_SIZE_M = 10.0
# The upper-left corner of tile 0, near Lake Müritz (53.47 N, 12.65 E).
TILE_ORIGIN = (344_000.0, 5_927_000.0)
FIRST_ACQUISITION = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)


def tile_transform(index: int, size: int) -> Affine:
    """Where tile `index` of a dataset lies: `index` tiles east of TILE_ORIGIN, 10 m pixels."""
    west = TILE_ORIGIN[0] + index * size * PIXEL_SIZE_M
    return Affine(PIXEL_SIZE_M, 0.0, west, 0.0, -PIXEL_SIZE_M, TILE_ORIGIN[1])


@dataclass(frozen=True)
class Tile:
    """One multispectral tile with its ground truth, where and when it was seen."""

    tile_id: str
    bands: np.ndarray  # (band, row, column) float32 reflectance, BAND_NAMES order
    water_mask: np.ndarray  # (row, column) uint8, 1 = water
    cloud_mask: np.ndarray  # (row, column) uint8, 1 = cloud over the surface
    crs: str = TILE_CRS
    transform: Affine = field(default_factory=lambda: tile_transform(0, 0))
    acquired: datetime = FIRST_ACQUISITION

    @property
    def shape(self) -> tuple[int, int]:
        return self.water_mask.shape


def generate_tile(
    tile_id: str,
    seed: int,
    size: int = 64,
    cloud_cover: float = 0.0,
    index: int = 0,
    acquired: datetime = FIRST_ACQUISITION,
) -> Tile:
    """A tile of `size` x `size` pixels at place `index` (see `tile_transform`);
    `cloud_cover` is the fraction of it under cloud."""
    rng = np.random.default_rng(seed)
    water = _lakes(rng, size) | _river(rng, size)
    land = _land_reflectance(rng, size)
    water_colour = _blend(CLEAR_WATER, TURBID_WATER, _smooth_field(rng, size))
    # Soft edges: shore pixels mix water and land, as 10 m pixels do.
    water_fraction = np.clip(gaussian_filter(water.astype(float), sigma=0.7), 0.0, 1.0)
    bands = water_fraction * water_colour + (1.0 - water_fraction) * land
    bands += rng.normal(0.0, 0.008, size=bands.shape)
    cloud = np.zeros((size, size), dtype=bool)
    if cloud_cover > 0:
        bands, cloud = _add_clouds(rng, bands, cloud_cover)
    return Tile(
        tile_id=tile_id,
        bands=np.clip(bands, 0.0, 1.0).astype(np.float32),
        water_mask=water.astype(np.uint8),
        cloud_mask=cloud.astype(np.uint8),
        transform=tile_transform(index, size),
        acquired=acquired,
    )


def generate_tiles(
    n_tiles: int,
    seed: int,
    size: int = 64,
    cloud_cover: float = 0.0,
    prefix: str = "tile",
    acquired: datetime | None = None,
) -> list[Tile]:
    """`n_tiles` different tiles side by side; tile i depends only on (seed, i). Without
    `acquired`, the date follows from the seed (a day within a year of FIRST_ACQUISITION)."""
    when = acquired or FIRST_ACQUISITION + timedelta(days=seed % 365)
    return [
        generate_tile(
            f"{prefix}_{index:03d}", _tile_seed(seed, index), size, cloud_cover, index, when
        )
        for index in range(n_tiles)
    ]


def add_haze(tile: Tile, strength: float) -> Tile:
    """The tile seen through haze: each pixel mixed with HAZE by `strength` (0 = clear, 1 =
    only haze). The surface and its truth are unchanged; what the model sees drifts."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"haze strength {strength!r} is not in [0, 1): try 0.5 for thick haze")
    if strength == 0.0:
        return tile
    hazy = (1.0 - strength) * tile.bands + strength * HAZE[:, None, None]
    return replace(tile, bands=np.clip(hazy, 0.0, 1.0).astype(np.float32))


def _tile_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _smooth_field(rng: np.random.Generator, size: int, scale: float = 8.0) -> np.ndarray:
    """Spatially smooth noise in [0, 1], for gradual changes across the landscape."""
    field = gaussian_filter(rng.standard_normal((size, size)), sigma=size / scale)
    span = field.max() - field.min()
    return (field - field.min()) / span if span > 0 else np.zeros_like(field)


def _blend(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two spectra: (band, row, column)."""
    return first[:, None, None] * (1.0 - weight) + second[:, None, None] * weight


def _land_reflectance(rng: np.random.Generator, size: int) -> np.ndarray:
    land = _blend(VEGETATION, BARE_SOIL, _smooth_field(rng, size))
    wet_patches = _smooth_field(rng, size, scale=12.0) > 0.85
    return np.where(wet_patches, DARK_WET_SOIL[:, None, None], land)


def _lakes(rng: np.random.Generator, size: int) -> np.ndarray:
    rows, columns = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        centre_row, centre_column = rng.uniform(0.1, 0.9, size=2) * size
        radius_a, radius_b = rng.uniform(0.06, 0.18, size=2) * size
        angle = rng.uniform(0, np.pi)
        along = (rows - centre_row) * np.cos(angle) + (columns - centre_column) * np.sin(angle)
        across = -(rows - centre_row) * np.sin(angle) + (columns - centre_column) * np.cos(angle)
        mask |= (along / radius_a) ** 2 + (across / radius_b) ** 2 <= 1.0
    return mask


def _river(rng: np.random.Generator, size: int, probability: float = 0.7) -> np.ndarray:
    if rng.uniform() > probability:
        return np.zeros((size, size), dtype=bool)
    rows, columns = np.mgrid[0:size, 0:size].astype(float)
    centre = rng.uniform(0.2, 0.8) * size
    amplitude = rng.uniform(0.05, 0.2) * size
    wavelength = rng.uniform(0.6, 1.5) * size
    phase = rng.uniform(0, 2 * np.pi)
    half_width = rng.uniform(1.0, 2.5)
    path = centre + amplitude * np.sin(2 * np.pi * columns / wavelength + phase)
    mask = np.abs(rows - path) <= half_width
    return mask.T if rng.uniform() < 0.5 else mask


def _add_clouds(
    rng: np.random.Generator, bands: np.ndarray, cloud_cover: float
) -> tuple[np.ndarray, np.ndarray]:
    size = bands.shape[-1]
    density = _smooth_field(rng, size, scale=6.0)
    threshold = np.quantile(density, 1.0 - cloud_cover)
    opacity = np.clip((density - threshold) / 0.1, 0.0, 1.0)
    cloudy = opacity[None] * CLOUD[:, None, None] + (1.0 - opacity[None]) * bands
    return cloudy, opacity > 0.5
