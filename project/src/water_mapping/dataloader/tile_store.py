"""Scenes in the data store, as the field keeps them: Cloud-Optimized GeoTIFFs in a STAC
catalog.

A dataset is the catalog `raw/<dataset>/catalog.json`; each tile is an Item
`raw/<dataset>/<tile_id>/<tile_id>.json` with one COG asset per band, named as Sentinel-2 L2A
Items of Element 84's Earth Search are (blue, green, red, nir, swir16: uint16 reflectance
scaled by 1e-4, nodata 0) and the scene classification layer `scl` (Sen2Cor's classes, whose
"water" class is the ground truth here). `read_scene` takes any such Item, so real Sentinel-2
Items from a STAC API go through the same code as the synthetic ones.
"""

from __future__ import annotations

import numpy as np
import pystac
import rasterio
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds, transform_geom

from water_mapping.dataloader.synthetic_tiles import BAND_NAMES, Tile
from water_mapping.utils.cog import write_cog
from water_mapping.utils.data_store import DataStore
from water_mapping.utils.stac import asset_href, read_items, save_catalog

RAW_PREFIX = "raw"
# The Item asset of each band, in BAND_NAMES order (Earth Search's keys for Sentinel-2 L2A).
BAND_ASSETS = ("blue", "green", "red", "nir", "swir16")
SCENE_CLASS_ASSET = "scl"
REFLECTANCE_SCALE = 1e-4  # stored value 10000 = reflectance 1.0
NODATA = 0
# Sen2Cor's scene classes used here.
SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 4, 5, 6
SCL_CLOUD = (8, 9, 10)  # medium and high probability, thin cirrus


def dataset_prefix(dataset: str) -> str:
    return f"{RAW_PREFIX}/{dataset}"


def write_tiles(store: DataStore, dataset: str, tiles: list[Tile]) -> list[str]:
    """Write tiles as COG scenes and the dataset's STAC catalog; returns the Items' hrefs."""
    prefix = dataset_prefix(dataset)
    items = [_write_scene(store, prefix, tile) for tile in tiles]
    save_catalog(store, prefix, f"Scenes of dataset {dataset}", items)
    return [str(item.get_self_href()) for item in items]


def read_scene(item: pystac.Item) -> Tile:
    """The bands, water and cloud masks of a Sentinel-2 L2A style Item, on the grid of its
    first band (other bands resampled to it, as 20 m bands of real Items need)."""
    missing = [key for key in (*BAND_ASSETS, SCENE_CLASS_ASSET) if key not in item.assets]
    if missing:
        raise ValueError(
            f"STAC Item {item.id} has no asset(s) {missing} (it has {sorted(item.assets)}): "
            f"the dataloader needs Sentinel-2 L2A assets named {(*BAND_ASSETS, SCENE_CLASS_ASSET)}"
        )
    with rasterio.open(asset_href(item, BAND_ASSETS[0])) as reference:
        shape, crs, transform = reference.shape, reference.crs, reference.transform
    bands = np.stack([_read_band(asset_href(item, key), shape) for key in BAND_ASSETS])
    scene_class = _read_raw(asset_href(item, SCENE_CLASS_ASSET), shape)
    return Tile(
        tile_id=item.id,
        bands=bands,
        water_mask=(scene_class == SCL_WATER).astype(np.uint8),
        cloud_mask=np.isin(scene_class, SCL_CLOUD).astype(np.uint8),
        crs=crs.to_string(),
        transform=transform,
        acquired=item.datetime or Tile.acquired,
    )


def read_items_of(store: DataStore, dataset: str) -> list[pystac.Item]:
    """The dataset's STAC Items, in tile id order."""
    try:
        return read_items(store, dataset_prefix(dataset))
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}: generate the tiles of dataset {dataset!r} first"
        ) from None


def list_tile_ids(store: DataStore, dataset: str) -> list[str]:
    if not store.list_keys(f"{dataset_prefix(dataset)}/catalog.json"):
        return []
    return [item.id for item in read_items_of(store, dataset)]


def read_tile(store: DataStore, dataset: str, tile_id: str) -> Tile:
    for item in read_items_of(store, dataset):
        if item.id == tile_id:
            return read_scene(item)
    raise FileNotFoundError(f"no tile {tile_id!r} in dataset {dataset!r}")


def read_tiles(store: DataStore, dataset: str) -> list[Tile]:
    """All tiles of a dataset, in tile id order."""
    return [read_scene(item) for item in read_items_of(store, dataset)]


def scene_geometry(tile: Tile) -> tuple[dict[str, object], list[float]]:
    """The tile's footprint (GeoJSON) and bounding box in WGS 84, as STAC wants them."""
    rows, columns = tile.shape
    west, north = tile.transform @ (0, 0)
    east, south = tile.transform @ (columns, rows)
    corners = [(west, north), (east, north), (east, south), (west, south), (west, north)]
    footprint = {"type": "Polygon", "coordinates": [corners]}
    geometry = transform_geom(tile.crs, "EPSG:4326", footprint)
    bbox = list(transform_bounds(tile.crs, "EPSG:4326", west, south, east, north))
    return geometry, bbox


def scene_class_layer(tile: Tile) -> np.ndarray:
    """Sen2Cor-style classes for a synthetic tile: water, cloud, vegetation or bare."""
    red, nir = tile.bands[BAND_NAMES.index("red")], tile.bands[BAND_NAMES.index("nir")]
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    classes = np.where(ndvi > 0.3, SCL_VEGETATION, SCL_NOT_VEGETATED)
    classes = np.where(tile.water_mask.astype(bool), SCL_WATER, classes)
    classes = np.where(tile.cloud_mask.astype(bool), SCL_CLOUD[1], classes)
    return classes.astype(np.uint8)


def _write_scene(store: DataStore, prefix: str, tile: Tile) -> pystac.Item:
    folder = f"{prefix}/{tile.tile_id}"
    geometry, bbox = scene_geometry(tile)
    item = pystac.Item(
        id=tile.tile_id,
        geometry=geometry,
        bbox=bbox,
        datetime=tile.acquired,
        properties={"platform": "sentinel-2-synthetic", "gsd": abs(tile.transform.a)},
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code, projection.shape = tile.crs, list(tile.shape)
    projection.transform = list(tile.transform)[:6]
    stored = np.clip(np.rint(tile.bands / REFLECTANCE_SCALE), 1, 10_000).astype(np.uint16)
    for key, name, band in zip(BAND_ASSETS, BAND_NAMES, stored, strict=True):
        href = write_cog(
            store,
            f"{folder}/{key}.tif",
            band[None],
            crs=tile.crs,
            transform=tile.transform,
            descriptions=[name],
            nodata=NODATA,
            scale=REFLECTANCE_SCALE,
        )
        asset = pystac.Asset(href, title=name, media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(key, asset)
        EOExtension.ext(asset, add_if_missing=True).bands = [
            Band.create(name=key, common_name=name)
        ]
    href = write_cog(
        store,
        f"{folder}/{SCENE_CLASS_ASSET}.tif",
        scene_class_layer(tile)[None],
        crs=tile.crs,
        transform=tile.transform,
        descriptions=["scene classification"],
        nodata=NODATA,
    )
    item.add_asset(
        SCENE_CLASS_ASSET,
        pystac.Asset(
            href, title="Scene classification", media_type=pystac.MediaType.COG, roles=["data"]
        ),
    )
    return item


def _read_band(href: str, shape: tuple[int, int]) -> np.ndarray:
    """Reflectance (float32) of a one-band raster, nodata as 0, resampled to `shape`."""
    with rasterio.open(href) as source:
        data = source.read(1, out_shape=shape, resampling=Resampling.bilinear, masked=True)
        reflectance = data.astype(np.float32) * source.scales[0] + source.offsets[0]
    return np.clip(reflectance.filled(0.0), 0.0, 1.0).astype(np.float32)


def _read_raw(href: str, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(href) as source:
        return source.read(1, out_shape=shape, resampling=Resampling.nearest)
