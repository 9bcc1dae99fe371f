"""Cloud-Optimized GeoTIFFs: how the project writes every raster, checked as it is written.

GDAL's COG driver lays the file out (tiles, overviews, header first) so that a reader fetches
only the ranges it needs over HTTP/S3; rio-cogeo's validator confirms each file is one.
Files are built in GDAL's memory, validated there, and stored with one `put_bytes` of the data
store (GDAL writes no GeoTIFF straight to S3 without a local temporary file); every read goes
through GDAL itself (`rasterio.open("s3://data/...")`), ranges at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from affine import Affine
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_validate

from water_mapping.utils.data_store import DataStore


class NotACogError(ValueError):
    """A file that should be a Cloud-Optimized GeoTIFF is not one."""


def write_cog(
    store: DataStore,
    key: str,
    data: np.ndarray,
    *,
    crs: str,
    transform: Affine,
    descriptions: Sequence[str],
    nodata: float | None = None,
    scale: float = 1.0,
    offset: float = 0.0,
) -> str:
    """Write `data` (band, row, column) as a COG at `key`, one description per band; `scale`
    and `offset` turn stored values into physical ones (value * scale + offset). Returns the
    path GDAL reads it at, once rio-cogeo has validated the file."""
    if data.ndim != 3 or data.shape[0] != len(descriptions):
        raise ValueError(
            f"write_cog needs (band, row, column) data with one description per band, got "
            f"shape {data.shape} and descriptions {tuple(descriptions)}"
        )
    profile = {
        "driver": "COG",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "blocksize": 256,
    }
    with MemoryFile(ext=".tif") as memory:
        with memory.open(**profile) as dst:
            dst.write(data)
            dst.descriptions = tuple(descriptions)
            dst.scales = (scale,) * data.shape[0]
            dst.offsets = (offset,) * data.shape[0]
        assert_cog(memory.name, key)
        store.put_bytes(key, memory.read())
    return store.gdal_path(key)


def assert_cog(path: str, name: str | None = None) -> None:
    """Raise NotACogError, with the validator's findings, unless `path` is a valid COG."""
    valid, errors, _warnings = cog_validate(path, quiet=True)
    if not valid:
        raise NotACogError(f"{name or path} is not a valid Cloud-Optimized GeoTIFF: {errors}")
